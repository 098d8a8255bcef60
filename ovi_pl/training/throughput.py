"""Lightning's ThroughputMonitor, with MFU against the peak of the dtype the model computes in.

Lightning reads the compute dtype from the trainer's precision plugin; our runs keep the plugin
at 32-true (fp32 master weights) and get bf16 compute from FSDP2's mixed-precision policy, so
the stock callback would divide by the fp32 peak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.fabric.utilities.throughput import get_available_flops
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ThroughputMonitor


class TrainingThroughput(ThroughputMonitor):
    def __init__(
        self,
        batch_size_fn: Callable[[Any], int],
        length_fn: Callable[[Any], int] | None = None,
        window_size: int = 100,
    ) -> None:
        super().__init__(batch_size_fn, length_fn, window_size=window_size)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        dtype = getattr(pl_module, "compute_dtype", None)
        if dtype is None:
            return
        self.available_flops = get_available_flops(trainer.strategy.root_device, dtype)
        for throughput in self._throughputs.values():
            throughput.available_flops = self.available_flops
