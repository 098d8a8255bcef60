"""Lightning's ModelParallelStrategy set up for pure FSDP2 data parallelism over every rank."""

from __future__ import annotations

from datetime import timedelta

from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.constants import default_pg_timeout


class FSDP2Strategy(ModelParallelStrategy):
    """One data-parallel mesh dimension spanning all ranks of all nodes, no tensor parallelism.

    ModelParallelStrategy's "auto" data-parallel size is the node count (it assumes tensor
    parallelism inside a node); here it follows `devices x num_nodes`, so changing
    `--trainer.devices` is all a user does to scale out.
    """

    def __init__(
        self,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()
