"""Sample a few fixed prompts during training and log the mp4s (with sound) to the MLflow run.

Cost is bounded by the config: len(prompts) clips of `geometry` every `every_n_steps` optimizer
steps, each `sampler.steps` steps of 1 or 2 forward passes (2 with guidance). Under FSDP2 every
rank runs the same forward passes, since each sharded module all-gathers its weights from all
ranks; only global rank 0 decodes, writes and logs. Prompts are embedded once, on first use, and
the text encoder is dropped again, so it does not stay in memory for the rest of training.

Without every encoder's local path, clips would come from preview stand-ins (a hash text
embedding, a random latent-to-RGB projection, a tone: ovi_pl/generation/components.py), which
are not the model's output. The callback refuses them unless `previews: true` asks for them, and
then logs them under `previews/`, never under `samples/`.

Each clip's audio-visual sync is judged as curation judges its clips (training/sample_sync.py) and
logged as metrics over steps next to the losses: `<dir>/sync_offset` and `<dir>/sync_abs_offset`
(frames, mean over the clips), `<dir>/sync_confidence` (mean), and `<dir>/sync_method/<method>`
(how many clips that judge decided; confidences mean something only within one method). With
`clap_model`, each clip's audio is scored against its prompt's audio description by the evaluation's
CLAP scorer (ovi_pl/evaluation/clap_score.py) and logged as `<dir>/clap_score` (mean over the clips).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger

from ovi_pl.evaluation.texts import audio_text
from ovi_pl.generation.components import ClipGeometry, GenerationEncoders
from ovi_pl.generation.pipeline import clip_file_name, decode_clips, encode_prompts, generate_latents, write_clip
from ovi_pl.generation.sampler import Conditioning, SamplerConfig
from ovi_pl.models.ovi import get_model_config
from ovi_pl.sync.model import load_syncnet
from ovi_pl.training.sample_sync import SampleSync, SampleSyncJudge

if TYPE_CHECKING:
    from ovi_pl.evaluation.clap_score import ClapScorer


class SampleVideoCallback(Callback):
    """prompts: fixed prompts to sample (the budget: one clip each per logging step).
    every_n_steps: optimizer steps between samplings. geometry / sampler: clip size and solver
    (keep both small: sampling runs inside training). encoders: local paths of the text encoder
    and VAEs. previews: allow stand-ins for the unset ones (see the module docstring).
    sync: judge each clip's audio-visual sync and log it; syncnet_weights: a local SyncNet
    checkpoint to judge faces with first (without it, the weight-free judges decide).
    clap_model: a local directory with a transformers ClapModel + ClapProcessor (save_pretrained) to
    score each clip's audio against its prompt's audio description; None logs no CLAP score.
    The clips go to `samples/step_N/` of the run's artifacts (and of `trainer.default_root_dir`),
    or to `previews/step_N/` when any stand-in is in use."""

    def __init__(
        self,
        prompts: list[str],
        every_n_steps: int = 1000,
        geometry: ClipGeometry = ClipGeometry(height=256, width=448, num_frames=25),
        sampler: SamplerConfig = SamplerConfig(steps=20),
        encoders: GenerationEncoders = GenerationEncoders(),
        previews: bool = False,
        sync: bool = True,
        syncnet_weights: str | None = None,
        clap_model: str | None = None,
    ) -> None:
        if not prompts:
            raise ValueError("SampleVideoCallback needs at least one prompt")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.prompts = list(prompts)
        self.every_n_steps = every_n_steps
        self.geometry = geometry
        self.sampler = sampler
        stand_ins = encoders.previews
        if stand_ins and not previews:
            keys = {"text": "text_encoder", "video": "video_vae", "audio": "audio_vae and vocoder"}
            raise ValueError(
                f"SampleVideoCallback: encoders.{', encoders.'.join(keys[s] for s in stand_ins)} unset, so the "
                f"{', '.join(stand_ins)} would come from preview stand-ins, which are not the model's samples. Give "
                "the local encoder paths, or set previews: true to log stand-in clips under previews/"
            )
        self.encoders = encoders
        self.artifact_dir = "previews" if stand_ins else "samples"
        self._cond: Conditioning | None = None
        self._decoders: tuple[Any, Any] | None = None
        self._last_step = -1
        if syncnet_weights is not None and not Path(syncnet_weights).is_file():
            raise ValueError(f"SampleVideoCallback: syncnet_weights {syncnet_weights} is not a file; give a local "
                             "SyncNet checkpoint or null for the weight-free judges")
        self.sync = sync
        self.syncnet_weights = syncnet_weights
        self._judge: SampleSyncJudge | None = None
        if clap_model is not None and not (Path(clap_model) / "config.json").is_file():
            raise ValueError(f"SampleVideoCallback: clap_model {clap_model} is not a saved CLAP model (no "
                             "config.json); give a local directory written by ClapModel/ClapProcessor "
                             "save_pretrained, or null for no CLAP score")
        self.clap_model = clap_model
        self._clap: ClapScorer | None = None

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # With gradient accumulation this hook runs several times per optimizer step; sample once.
        if step == 0 or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        self.sample_and_log(trainer, pl_module, step)

    def sample_and_log(self, trainer: Trainer, pl_module: LightningModule, step: int) -> list[Path]:
        """Sample on every rank; on rank 0, write the clips and log them. Returns the files written."""
        start = time.perf_counter()
        model = pl_module.model
        cfg = get_model_config(pl_module.model_config)
        if self._cond is None:
            text = self.encoders.text(cfg.video.text_len, cfg.video.text_dim, pl_module.device)
            self._cond = encode_prompts(text, self.prompts, self.sampler)
        was_training = model.training
        model.eval()
        try:
            video, audio = generate_latents(
                model, self._cond, self.geometry, self.sampler, pl_module.device, num_layers=cfg.video.num_layers
            )
        finally:
            model.train(was_training)
        if not trainer.is_global_zero:
            return []
        if self._decoders is None:
            self._decoders = (self.encoders.video(pl_module.device), self.encoders.audio(pl_module.device))
        clips = decode_clips(*self._decoders, video, audio, self.geometry.fps)
        folder = Path(trainer.default_root_dir) / self.artifact_dir / f"step_{step:07d}"
        paths = [write_clip(clip, folder / clip_file_name(i, p)) for i, (clip, p) in enumerate(zip(clips, self.prompts))]
        logger = trainer.logger
        if isinstance(logger, MLFlowLogger):
            logger.experiment.log_artifacts(logger.run_id, str(folder), f"{self.artifact_dir}/step_{step:07d}")
            metrics = self.sync_metrics([self.judge(p) for p in paths]) if self.sync else {}
            if self.clap_model is not None:
                metrics[f"{self.artifact_dir}/clap_score"] = self.clap_score(paths, str(pl_module.device))
            metrics[f"{self.artifact_dir}/seconds"] = time.perf_counter() - start
            logger.log_metrics(metrics, step=step)
        return paths

    def judge(self, clip: Path) -> SampleSync:
        """The sync of one written clip, by the first of SyncNet / mouth / onset judges that can look."""
        if self._judge is None:
            syncnet = None if self.syncnet_weights is None else load_syncnet(self.syncnet_weights)
            self._judge = SampleSyncJudge(syncnet=syncnet)
        return self._judge(clip)

    def clap_score(self, clips: list[Path], device: str = "cpu") -> float:
        """Mean CLAP score (100 x cosine) of the clips' audio against their prompts' audio descriptions."""
        if self._clap is None:
            # transformers loads only when a CLAP score is asked for.
            from ovi_pl.evaluation.clap_score import ClapScorer

            self._clap = ClapScorer(self.clap_model, device)
        scores = self._clap([(clip, audio_text(prompt)) for clip, prompt in zip(clips, self.prompts, strict=True)])
        return sum(scores) / len(scores)

    def sync_metrics(self, judged: list[SampleSync]) -> dict[str, float]:
        prefix = f"{self.artifact_dir}/sync"
        metrics = {
            f"{prefix}_offset": sum(j.offset for j in judged) / len(judged),
            f"{prefix}_abs_offset": sum(abs(j.offset) for j in judged) / len(judged),
            f"{prefix}_confidence": sum(j.confidence for j in judged) / len(judged),
        }
        for method in {j.method for j in judged}:
            metrics[f"{prefix}_method/{method}"] = float(sum(j.method == method for j in judged))
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = int(state_dict.get("last_step", -1))
