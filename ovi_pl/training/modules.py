"""LightningModules for the two training stages.

`AudioPretraining` trains a single audio tower from scratch on padded variable-length clips.
`FusionTraining` trains the twin towers together: video tower from Wan2.2, audio tower from
stage 1, Ovi's `fusion` freezing preset, loss 0.85 video + 0.15 audio. Both build their model
on the meta device in `configure_model`, shard it with `parallelize`, then materialise and load
initial weights into the shards, so no rank ever holds the full model.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from ovi_pl.models.ovi import (
    FREEZE_PRESETS,
    DiTTower,
    OviFusionModel,
    apply_freeze_preset,
    get_model_config,
    load_audio_tower,
    load_ovi_checkpoint,
    load_wan22_video_tower,
)
from ovi_pl.models.ovi.freezing import frozen_fresh_heads
from ovi_pl.models.ovi.parallelize import parallelize
from ovi_pl.training.ema import ExponentialMovingAverage
from ovi_pl.training.flops import training_flops
from ovi_pl.training.lora import LoraOptions, freeze_all_but_lora, inject_lora, plain_layer_names, reset_lora
from ovi_pl.training.loss_balance import LossBalance, LossBalancer
from ovi_pl.training.flow_matching import (
    AUDIO_TO_VIDEO,
    VIDEO_TO_AUDIO,
    Task,
    TaskMix,
    TimestepSampler,
    add_noise,
    drop_text,
    length_mask,
    masked_mse,
    modality_noise_levels,
    noise_like,
    step_generator,
    stratified_noise_levels,
    to_model_time,
    velocity_target,
)

Batch = dict[str, Tensor]


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with linear warmup then constant learning rate, and gradient-norm clipping.

    name: "adamw" (torch, fp32 moments, 8 bytes per trainable weight) or "adamw8bit" (torchao's
    AdamW8bit: block-wise 8-bit moments, about 2 bytes per weight; tensors under 4096 elements
    keep fp32 moments).
    """

    name: Literal["adamw", "adamw8bit"] = "adamw"
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip_norm: float | None = 1.0

    def __post_init__(self) -> None:
        key = "model.optimizer"
        _require(self.name in OPTIMIZERS, f"{key}.name={self.name!r} must be one of {sorted(OPTIMIZERS)}")
        if self.name == "adamw8bit":
            _require(importlib.util.find_spec("torchao") is not None,
                     f"{key}.name='adamw8bit' needs torchao: pip install torchao==0.18.0 (or -e '.[train]')")
        _require(self.lr > 0, f"{key}.lr={self.lr} must be > 0 (the paper: 1e-4 audio pretraining, 5e-5 fusion)")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                 f"{key}.betas={list(self.betas)} must be two numbers in [0, 1), e.g. [0.9, 0.95]")
        _require(self.eps > 0, f"{key}.eps={self.eps} must be > 0, e.g. 1e-8")
        _require(self.weight_decay >= 0, f"{key}.weight_decay={self.weight_decay} must be >= 0")
        _require(self.warmup_steps >= 0, f"{key}.warmup_steps={self.warmup_steps} must be >= 0 (0: no warmup)")
        _require(self.grad_clip_norm is None or self.grad_clip_norm > 0,
                 f"{key}.grad_clip_norm={self.grad_clip_norm} must be > 0, or null for no clipping")


@dataclass(frozen=True)
class ParallelConfig:
    """FSDP2 mixed precision and memory options; trainable parameters stay fp32.

    context_parallel: ranks that split each sample's tokens (Ulysses; README "Training"); the
    ranks (devices x nodes) form groups of this size, and each group trains on the same samples.
    """

    compute_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    activation_checkpointing: bool = True
    compile_blocks: bool = False
    # Storage of the weights that do not train (the fusion stage's frozen half, a LoRA base):
    # bfloat16 halves their memory and checkpoint bytes; the released Wan2.2 and Ovi weights are bf16.
    frozen_dtype: Literal["float32", "bfloat16"] = "float32"
    context_parallel: int = 1
    # FSDP2 keeps the weight shards, gradients and optimizer state in host memory and the
    # optimizer steps there; the GPU holds only the gathered units and activations.
    cpu_offload: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.context_parallel, int) or self.context_parallel < 1:
            raise ValueError(f"model.parallel.context_parallel={self.context_parallel!r} must be an integer >= 1")


@dataclass(frozen=True)
class ValidationConfig:
    """Validation loss at fixed stratified noise levels with fixed noise: comparable across runs."""

    noise_levels: int = 8
    seed: int = 1234

    def __post_init__(self) -> None:
        _require(self.noise_levels >= 1, f"model.validation.noise_levels={self.noise_levels} must be >= 1")


def _adamw8bit() -> type[torch.optim.Optimizer]:
    from torchao.optim import AdamW8bit  # optional, and slow to import

    return AdamW8bit


OPTIMIZERS = {"adamw": lambda: torch.optim.AdamW, "adamw8bit": _adamw8bit}


def _require(condition: bool, message: str) -> None:
    """Config checks: `message` names the key, its value and what it must be."""
    if not condition:
        raise ValueError(message)


# These dataclasses travel in checkpoint metadata (hyper-parameters); allow them through
# torch.load(weights_only=True), wherever a checkpoint is read (resume, export).
torch.serialization.add_safe_globals([OptimizerConfig, ParallelConfig, ValidationConfig, TimestepSampler])


class OviTrainingModule(L.LightningModule):
    """What both stages share: sharded model set-up, the optimizer, EMA, logging and validation."""

    def __init__(
        self,
        model_config: str,
        freeze_preset: str,
        optimizer: OptimizerConfig,
        parallel: ParallelConfig,
        timesteps: TimestepSampler,
        validation: ValidationConfig,
        text_dropout: float,
        ema_decay: float | None,
        seed: int,
    ) -> None:
        super().__init__()
        _require(0.0 <= text_dropout < 1.0, f"model.text_dropout={text_dropout} must be in [0, 1)")
        _require(ema_decay is None or 0.0 < ema_decay < 1.0,
                 f"model.ema_decay={ema_decay} must be in (0, 1), e.g. 0.9999, or null for no EMA")
        # Unknown names fail here, before any work starts.
        heads = get_model_config(model_config).video.num_heads
        if heads % parallel.context_parallel:
            raise ValueError(f"model.parallel.context_parallel={parallel.context_parallel} must divide the "
                             f"{heads} attention heads of {model_config}")
        if freeze_preset not in FREEZE_PRESETS:
            raise ValueError(f"unknown freeze_preset {freeze_preset!r}; choose one of {sorted(FREEZE_PRESETS)}")
        self.save_hyperparameters()
        self.model_config = model_config
        self.freeze_preset = freeze_preset
        self.optimizer_config = optimizer
        self.parallel = parallel
        self.timesteps = timesteps
        self.validation = validation
        self.text_dropout = text_dropout
        self.ema_decay = ema_decay
        self.seed = seed
        self.model: nn.Module | None = None
        self.ema: ExponentialMovingAverage | None = None
        self.flops_per_batch: float | None = None

    # -- stage-specific parts ---------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def load_initial_weights(self, model: nn.Module) -> None:
        raise NotImplementedError

    def compute_loss(self, batch: Batch, generator: torch.Generator, noise_level: float | None) -> dict[str, Tensor]:
        """Loss terms; `noise_level` fixes s for every sample (validation), else s is sampled."""
        raise NotImplementedError

    def apply_freezing(self, model: nn.Module) -> None:
        apply_freeze_preset(model, self.freeze_preset)

    # -- set-up ---------------------------------------------------------------------------------
    @property
    def context_parallel_size(self) -> int:
        """Read by FSDP2Strategy to lay out its (data_parallel, context_parallel) device mesh."""
        return self.parallel.context_parallel

    @property
    def data_parallel_rank(self) -> int:
        """Shared by the ranks of a context group, which must draw the same noise for the same samples."""
        sampler = self.trainer.distributed_sampler_kwargs
        return sampler["rank"] if sampler else 0

    @property
    def compute_dtype(self) -> torch.dtype:
        return getattr(torch, self.parallel.compute_dtype)

    def configure_model(self) -> None:
        if self.model is not None:
            return
        if self.parallel.cpu_offload and self.device_mesh is None:
            raise ValueError("model.parallel.cpu_offload: true needs FSDP2 sharding: set trainer.strategy to "
                             "ovi_pl.training.strategy.FSDP2Strategy, or cpu_offload: false")
        with torch.device("meta"):
            model = self.build_model()
        if self.parallel.frozen_dtype != "float32":
            # Before sharding: FSDP2 sizes each shard's storage from the parameter's dtype.
            self.apply_freezing(model)
            store_frozen_weights_as(model, getattr(torch, self.parallel.frozen_dtype))
        mesh = self.device_mesh  # (data_parallel, context_parallel), from FSDP2Strategy
        parallelize(
            model,
            mesh,
            param_dtype=self.compute_dtype,
            activation_checkpointing=self.parallel.activation_checkpointing,
            compile_blocks=self.parallel.compile_blocks,
            cpu_offload=self.parallel.cpu_offload,
        )
        # Offloaded shards must be materialised in host memory (FSDP2 checks); the model has no buffers.
        model.to_empty(device="cpu" if self.parallel.cpu_offload else self.trainer.strategy.root_device)
        torch.manual_seed(self.seed)
        model.init_weights()
        self.load_initial_weights(model)
        self.apply_freezing(model)
        self.model = model
        if self.ema_decay is not None:
            self.ema = ExponentialMovingAverage(model, self.ema_decay)

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.optimizer_config
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = OPTIMIZERS[cfg.name]()(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                           weight_decay=cfg.weight_decay)
        warmup = max(cfg.warmup_steps, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        generator = step_generator(self.seed, self.global_step, self.data_parallel_rank)
        losses = self.compute_loss(batch, generator, noise_level=None)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=False)
        self.log("loss", losses["loss"].detach(), prog_bar=True, logger=False)
        return losses["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._log_fixed_level_losses(batch, batch_idx, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._log_fixed_level_losses(batch, batch_idx, "test")

    def _log_fixed_level_losses(self, batch: Batch, batch_idx: int, prefix: str) -> None:
        totals: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        levels = stratified_noise_levels(self.validation.noise_levels)
        for i, level in enumerate(levels.tolist()):
            generator = step_generator(self.validation.seed, batch_idx, self.data_parallel_rank, stream=i)
            # A task mix may leave a modality without samples at some levels: average where present.
            for k, v in self.compute_loss(batch, generator, noise_level=level).items():
                totals[k] = totals.get(k, 0) + v.detach()
                counts[k] = counts.get(k, 0) + 1
        self.log_dict({f"{prefix}/{k}": v / counts[k] for k, v in totals.items()}, sync_dist=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.optimizer_config.grad_clip_norm or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if isinstance(norm, DTensor):
            norm = norm.full_tensor()
        self.log("train/grad_norm", norm)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # Here rather than in on_train_batch_end, which runs after checkpoint callbacks: a
        # checkpoint must hold the average that includes its own step.
        if self.ema is not None:
            self.ema.update(self.model)

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        # Each rank of a context group computes its share of the group's batch.
        self.flops_per_batch = self.batch_flops(batch) / self.context_parallel_size

    def batch_flops(self, batch: Batch) -> float:
        raise NotImplementedError

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        balancer = getattr(self, "loss_balancer", None)
        if balancer is not None:
            checkpoint["loss_magnitudes"] = balancer.state_dict()
        logger = self.logger
        if logger is not None and hasattr(logger, "run_id"):
            # Lets `python -m ovi_pl fit --ckpt_path ...` continue the same MLflow run.
            checkpoint["mlflow_run_id"] = logger.run_id

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        balancer = getattr(self, "loss_balancer", None)
        if balancer is not None and "loss_magnitudes" in checkpoint:
            balancer.load_state_dict(checkpoint["loss_magnitudes"])


class AudioPretraining(OviTrainingModule):
    """Stage 1: the audio tower alone, on clips up to 12 s padded to the batch's longest."""

    def __init__(
        self,
        model_config: str = "ovi-11b",
        freeze_preset: str = "audio-pretrain",
        optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4, betas=(0.9, 0.999)),
        parallel: ParallelConfig = ParallelConfig(),
        timesteps: TimestepSampler = TimestepSampler(),
        validation: ValidationConfig = ValidationConfig(),
        text_dropout: float = 0.1,
        ema_decay: float | None = 0.9999,
        seed: int = 0,
        init_checkpoint: str | None = None,
    ) -> None:
        super().__init__(
            model_config, freeze_preset, optimizer, parallel, timesteps, validation, text_dropout, ema_decay, seed
        )
        self.init_checkpoint = init_checkpoint

    def build_model(self) -> nn.Module:
        return DiTTower(get_model_config(self.model_config).audio)

    def load_initial_weights(self, model: nn.Module) -> None:
        if self.init_checkpoint:
            load_audio_tower(model, self.init_checkpoint)

    def compute_loss(self, batch: Batch, generator: torch.Generator, noise_level: float | None) -> dict[str, Tensor]:
        x0, lengths = batch["audio_latents"], batch["audio_length"]
        s = _noise_levels(self.timesteps, x0.shape[0], generator, noise_level, x0.device)
        noise = noise_like(x0, generator)
        text = drop_text(batch["text_embedding"], self.text_dropout if noise_level is None else 0.0, generator)
        prediction = self.model(add_noise(x0, noise, s), to_model_time(s), text, lengths=lengths)
        loss = masked_mse(prediction, velocity_target(x0, noise), length_mask(lengths, x0.shape[1]))
        return {"loss": loss, "loss_audio": loss}

    def batch_flops(self, batch: Batch) -> float:
        cfg = get_model_config(self.model_config)
        audio = batch["audio_latents"]
        return training_flops(cfg.audio, audio.shape[0], audio.shape[1], other_tokens=0)


class FusionTraining(OviTrainingModule):
    """Stage 2: both towers, Ovi's `fusion` freezing preset, weighted video and audio losses.

    task: joint (both modalities noised and learned), video_to_audio (clean video, audio learned),
    audio_to_video, or {task: probability} drawn per sample. loss_balance: fixed weights, or
    running (each loss divided by its running magnitude first; training/loss_balance.py).
    """

    def __init__(
        self,
        model_config: str = "ovi-11b",
        freeze_preset: str = "fusion",
        optimizer: OptimizerConfig = OptimizerConfig(),
        parallel: ParallelConfig = ParallelConfig(),
        timesteps: TimestepSampler = TimestepSampler(),
        validation: ValidationConfig = ValidationConfig(),
        text_dropout: float = 0.1,
        ema_decay: float | None = 0.9999,
        seed: int = 0,
        video_loss_weight: float = 0.85,
        audio_loss_weight: float = 0.15,
        loss_balance: LossBalance = "fixed",
        loss_balance_decay: float = 0.99,
        task: Task | dict[str, float] = "joint",
        image_to_video_prob: float = 0.0,
        video_init: str | None = None,
        audio_init: str | None = None,
        init_checkpoint: str | None = None,
        lora: LoraOptions | None = None,
    ) -> None:
        super().__init__(
            model_config, freeze_preset, optimizer, parallel, timesteps, validation, text_dropout, ema_decay, seed
        )
        if init_checkpoint and (video_init or audio_init):
            raise ValueError("give either init_checkpoint (a whole Ovi model) or video_init/audio_init, not both")
        for key, weight in (("video_loss_weight", video_loss_weight), ("audio_loss_weight", audio_loss_weight)):
            _require(weight >= 0, f"model.{key}={weight} must be >= 0 (the paper: 0.85 video, 0.15 audio)")
        _require(video_loss_weight + audio_loss_weight > 0, "model.video_loss_weight and model.audio_loss_weight "
                 "are both 0: nothing would train")
        _require(0.0 <= image_to_video_prob <= 1.0, f"model.image_to_video_prob={image_to_video_prob} must be in [0, 1]")
        self.fresh_towers = [t for t, init in (("video", video_init), ("audio", audio_init)) if not (init or init_checkpoint)]
        self.tasks = TaskMix.parse(task if isinstance(task, str) else dict(task))
        self.loss_balancer = LossBalancer(
            {"video": video_loss_weight, "audio": audio_loss_weight}, loss_balance, loss_balance_decay
        )
        learned = [m for m in ("video", "audio") if self.tasks.trains(m)]
        _require(any(self.loss_balancer.weights[m] > 0 for m in learned),
                 f"model.task={task!r} learns only {' and '.join(learned)}, whose loss weight is 0: nothing would "
                 f"train; set model.{learned[0]}_loss_weight > 0")
        self.image_to_video_prob = image_to_video_prob
        self.video_init = video_init
        self.audio_init = audio_init
        self.init_checkpoint = init_checkpoint
        # LoRA: adapters on the attention projections train, every base weight stays frozen
        # (freeze_preset is not used); exports merge the adapters (training/lora.py).
        self.lora = lora

    def setup(self, stage: str) -> None:
        # Before configure_model builds or loads anything. Only for fit: validate and test take
        # their weights from a checkpoint.
        if stage == "fit":
            refuse_frozen_fresh_towers(self.fresh_towers, self.freeze_preset, self.lora is not None)

    def build_model(self) -> nn.Module:
        model = OviFusionModel(get_model_config(self.model_config))
        # Before sharding (configure_model shards what this returns), so adapters shard with their layers.
        return model if self.lora is None else inject_lora(model, self.lora)

    def apply_freezing(self, model: nn.Module) -> None:
        if self.lora is None:
            super().apply_freezing(model)
        else:
            freeze_all_but_lora(model)

    def load_initial_weights(self, model: nn.Module) -> None:
        if self.lora is None:
            self._load_plain_weights(model)
            return
        with plain_layer_names(model):
            self._load_plain_weights(model)
        reset_lora(model)  # init_weights re-initialised the adapters too; start from B = 0

    def _load_plain_weights(self, model: nn.Module) -> None:
        if self.init_checkpoint:
            load_ovi_checkpoint(model, self.init_checkpoint)
        if self.video_init:
            load_wan22_video_tower(model, self.video_init)
        if self.audio_init:
            load_audio_tower(model, self.audio_init)

    def compute_loss(self, batch: Batch, generator: torch.Generator, noise_level: float | None) -> dict[str, Tensor]:
        video, audio, lengths = batch["video_latents"], batch["audio_latents"], batch["audio_length"]
        s = _noise_levels(self.timesteps, video.shape[0], generator, noise_level, video.device)
        video_noise, audio_noise = noise_like(video, generator), noise_like(audio, generator)
        training = noise_level is None
        first_frame_clean = training and float(torch.rand(1, generator=generator)) < self.image_to_video_prob
        text = drop_text(batch["text_embedding"], self.text_dropout if training else 0.0, generator)
        # Drawn last, and only for a mix, so joint runs keep the random stream they had before tasks.
        tasks = self.tasks.draw(video.shape[0], generator)
        s_video, s_audio = modality_noise_levels(s, tasks)
        noisy_video = add_noise(video, video_noise, s_video)
        if first_frame_clean:
            noisy_video[:, :, :1] = video[:, :, :1]
        video_pred, audio_pred = self.model(
            noisy_video,
            add_noise(audio, audio_noise, s_audio),
            to_model_time(s_video),
            text,
            text,
            audio_lengths=lengths,
            first_frame_clean=first_frame_clean,
            audio_t=to_model_time(s_audio),
        )
        raw: dict[str, Tensor] = {}
        # A clean conditioning modality, like a clean first frame, has nothing to predict: no loss.
        video_samples, audio_samples = tasks != VIDEO_TO_AUDIO, tasks != AUDIO_TO_VIDEO
        if bool(video_samples.any()):
            first = 1 if first_frame_clean else 0
            pred = video_pred[:, :, first:].flatten(2).transpose(1, 2)  # [B, tokens, C]
            target = velocity_target(video, video_noise)[:, :, first:].flatten(2).transpose(1, 2)
            mask = None if self.tasks.only is not None else video_samples.to(video.device)[:, None].expand(pred.shape[:2])
            raw["video"] = masked_mse(pred, target, mask)
        if bool(audio_samples.any()):
            mask = length_mask(lengths, audio.shape[1]) & audio_samples.to(audio.device)[:, None]
            raw["audio"] = masked_mse(audio_pred, velocity_target(audio, audio_noise), mask)
        if training and self.loss_balancer.mode == "running":
            self.loss_balancer.update({k: float(self.trainer.strategy.reduce(v.detach(), reduce_op="mean"))
                                       for k, v in raw.items()})
        weighted = self.loss_balancer.weighted(raw)
        losses = {"loss": sum(weighted.values())}
        losses.update({f"loss_{k}": v for k, v in raw.items()})
        losses.update({f"loss_{k}_weighted": v for k, v in weighted.items()})
        return losses

    def batch_flops(self, batch: Batch) -> float:
        cfg = get_model_config(self.model_config)
        video, audio = batch["video_latents"], batch["audio_latents"]
        pt, ph, pw = cfg.video.patch_size
        video_tokens = (video.shape[2] // pt) * (video.shape[3] // ph) * (video.shape[4] // pw)
        batch_size, audio_tokens = audio.shape[:2]
        return training_flops(cfg.video, batch_size, video_tokens, audio_tokens) + training_flops(
            cfg.audio, batch_size, audio_tokens, video_tokens
        )


def store_frozen_weights_as(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast every parameter that does not require grad to `dtype` (FSDP2 all-gathers it in the compute dtype)."""
    for param in model.parameters():
        if not param.requires_grad:
            param.data = param.data.to(dtype)


def refuse_frozen_fresh_towers(fresh: list[str], freeze_preset: str, lora: bool) -> None:
    """A tower left at its random init has a zero head; frozen, it passes no gradient and never learns."""
    stuck = fresh if lora else frozen_fresh_heads(freeze_preset, fresh)
    if not stuck:
        return
    frozen_by = "LoRA (every base weight frozen)" if lora else f"model.freeze_preset={freeze_preset!r}"
    raise ValueError(
        f"the {' and '.join(stuck)} tower starts from random weights with a zero output head (no "
        f"{' or '.join(f'model.{t}_init' for t in stuck)} or model.init_checkpoint is set) and {frozen_by} freezes "
        "that head, so its loss could never fall. Load pretrained weights: model.video_init = the Wan2.2-TI2V-5B "
        "DiT directory, model.audio_init = the stage-1 audio tower export, or model.init_checkpoint = an Ovi "
        "checkpoint; or train the fresh tower: freeze_preset 'fusion-fresh-video' (video from scratch, audio "
        "pretrained) or 'full' (no LoRA)."
    )


def _noise_levels(
    sampler: TimestepSampler, batch: int, generator: torch.Generator, fixed: float | None, device: torch.device
) -> Tensor:
    if fixed is not None:
        return torch.full((batch,), fixed, device=device)
    return sampler.sample(batch, generator, device)
