"""Lightning's ModelParallelStrategy set up for FSDP2 over data- and context-parallel ranks."""

from __future__ import annotations

from datetime import timedelta

from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.constants import default_pg_timeout
from torch.distributed.device_mesh import init_device_mesh


class FSDP2Strategy(ModelParallelStrategy):
    """A (data_parallel, context_parallel) device mesh over all ranks of all nodes, no tensor parallelism.

    ModelParallelStrategy's "auto" data-parallel size is the node count (it assumes tensor
    parallelism inside a node); here it is `devices x num_nodes / context_parallel`, so changing
    `--trainer.devices` is all a user does to scale out. The LightningModule's
    `context_parallel_size` (model.parallel.context_parallel) sets the inner dimension: groups of
    adjacent ranks, inside a node when it divides the devices per node, that split each sample's
    tokens. Data loaders shard by the data-parallel rank (`distributed_sampler_kwargs`).
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
        context = getattr(self.lightning_module, "context_parallel_size", 1)
        ranks = self.num_nodes * self.num_processes
        if ranks % context:
            raise ValueError(f"model.parallel.context_parallel={context} must divide the {ranks} ranks "
                             "(trainer.devices x trainer.num_nodes)")
        self._data_parallel_size = ranks // context
        # ModelParallelStrategy.setup_environment, with our mesh in place of its (data, tensor) one.
        self._setup_distributed()
        self._device_mesh = init_device_mesh(
            self.root_device.type, (ranks // context, context), mesh_dim_names=("data_parallel", "context_parallel")
        )
        self.lightning_module._device_mesh = self._device_mesh
