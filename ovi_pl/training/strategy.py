"""Lightning's ModelParallelStrategy set up for FSDP2 over data- and context-parallel ranks,
with optional asynchronous distributed-checkpoint saves."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from lightning.fabric.utilities.load import _METADATA_FILENAME
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

    async_save: distributed checkpoints are written with `torch.distributed.checkpoint.async_save`:
    each rank copies its shards to CPU memory and training goes on while a thread writes them.
    One save is in flight at a time (the next waits for it), and the end of training waits for
    the last, so every checkpoint a finished run lists is complete.
    """

    def __init__(
        self,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        async_save: bool = False,
    ) -> None:
        if async_save and not save_distributed_checkpoint:
            raise ValueError("trainer.strategy.async_save needs save_distributed_checkpoint: true")
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        self.async_save = async_save
        self._pending_save: Future | None = None
        self._save_group: dist.ProcessGroup | None = None

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
        if self.async_save:
            # async_save coordinates its writer threads over a CPU process group; NCCL is not one.
            self._save_group = dist.new_group(backend="gloo")

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None = None) -> None:
        if not self.async_save:
            super().save_checkpoint(checkpoint, filepath, storage_options)
            return
        self.wait_for_checkpoint()
        path = Path(self.broadcast(filepath))
        path.mkdir(parents=True, exist_ok=True)
        state = {"state_dict": checkpoint.pop("state_dict")}
        state.update({f"optimizer_{i}": s for i, s in enumerate(checkpoint.pop("optimizer_states", []))})
        self._pending_save = dcp.async_save(state, checkpoint_id=path, process_group=self._save_group)
        if self.global_rank == 0:
            torch.save(checkpoint, path / _METADATA_FILENAME)  # loops, callbacks, hyper-parameters

    def wait_for_checkpoint(self) -> None:
        """Block until the checkpoint being written, if any, is complete on this rank."""
        if self._pending_save is not None:
            self._pending_save.result()
            self._pending_save = None

    def teardown(self) -> None:
        self.wait_for_checkpoint()
        super().teardown()
