"""MLFlowLogger that can continue a run whose hyper-parameters have since changed.

MLflow refuses to overwrite a run's params, but resuming with, say, a new learning rate is a
normal thing to do. Params that are unchanged or new are logged as usual; a changed one keeps
its first value and its new one goes into a `changed_on_resume/<name>` tag, with a warning.
"""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn


class ResumableMLFlowLogger(MLFlowLogger):
    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        flat = _flatten_dict(_convert_params(params))
        logged = self.experiment.get_run(self.run_id).data.params
        changed = {k: v for k, v in flat.items() if k in logged and logged[k] != str(v)[:6000]}
        for key, value in changed.items():
            rank_zero_warn(f"MLflow run {self.run_id}: {key} was {logged[key]}, is now {value} (kept as a tag)")
            self.experiment.set_tag(self.run_id, f"changed_on_resume/{key}", str(value))
        super().log_hyperparams({k: v for k, v in flat.items() if k not in changed})
