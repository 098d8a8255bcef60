"""LightningDataModule over WebDataset shards: precomputed latents, or raw clips encoded on the fly.

Batches are what FusionTraining consumes (`video_latents` [B, 48, F, H, W], `audio_latents`
[B, L, 20] zero-padded, `audio_length` [B], `text_embedding` [B, T, D] zero past each prompt), or,
with modality "audio", the same without `video_latents` for AudioPretraining. Raw clips are decoded,
resized and cropped in the dataloader workers; the encoders run in `on_after_batch_transfer`,
on the training device, in the main process.

The data position is the number of global batches consumed, in an order fixed by the seed, the
batch size and the shards alone (order.py): a checkpoint resumes exactly, on any number of ranks
and workers, with no sample repeated or skipped within the epoch.
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from data_specs.geometry import DEFAULT_TARGET_AREA
from ovi_pl.encoders import AudioVAE, UMT5TextEncoder, VideoVAE

from .collate import pad_sequences, stack
from .encoding import EncoderPaths, Encoders
from .index import SampleIndex, build_index
from .samples import TEXT_MEMBER, SampleConfig
from .stream import SKIPPED_KEY, ShardBatchStream
from .urls import expand_shard_urls

log = logging.getLogger(__name__)
SKIPPED_METRIC = "data/skipped_samples"
_ORDER_FIELDS = ("batch_size", "seed")  # the global order is a function of these (and the shards)
_FLOAT_KEYS = ("video_latents", "audio_latents", "text_embedding")


class ShardDataModule(L.LightningDataModule):
    """Shards -> training batches. Train with `max_steps`: the training stream is endless
    (data epoch after data epoch) unless `epochs` is set.

    train_urls / val_urls: paths, globs, `{000..099}` brace patterns, directories, `pipe:`
        commands or fsspec URLs (see urls.py); shards that are not local files are copied into
        `cache_dir` once (default: ovi_pl_shards in the system's temporary folder).
    mode: "latent" reads `video_latents.npy`, `audio_latents.npy` and `text_member`; "raw"
        decodes `.mp4` and `.flac`/`.wav` and encodes with `encoders` (paths) or the loaded
        `video_vae` / `audio_vae` / `text_encoder`; the text embedding comes from `text_member`
        when the sample has it, else from the text encoder on the caption.
    modality: "audio_video" (fusion; audio-only samples are passed over) or "audio" (audio
        pretraining: every sample's audio, up to `max_audio_seconds`, batches without video).
    num_frames, target_area, buckets: raw mode crops clips to num_frames at 24 fps and resizes
        and centre-crops them to about target_area pixels (sides multiples of 32, the clip's aspect
        ratio) or to the nearest-aspect entry of `buckets` ([[h, w], ...]).
    text_len: text embeddings are cut to this many tokens (the model's text_len).
    epochs: data epochs in the training stream (None: endless); every rank gets the same
        number of batches, the last few (fewer than the world size) left out.
    Each data epoch is a seeded permutation of every sample of the shards; samples batch only with
    samples of the same latent shape, so batch_size > 1 works with mixed aspect ratios. Latents
    and text embeddings leave the workers in their stored precision and become float32 on the
    training device.
    """

    def __init__(
        self,
        train_urls: str | list[str],
        val_urls: str | list[str] | None = None,
        mode: Literal["latent", "raw"] = "latent",
        modality: Literal["audio_video", "audio"] = "audio_video",
        batch_size: int = 1,
        num_workers: int = 2,
        seed: int = 0,
        epochs: int | None = None,
        val_batches: int = 8,
        num_frames: int = 121,
        target_area: int = DEFAULT_TARGET_AREA,
        buckets: list[tuple[int, int]] | None = None,
        max_audio_seconds: float = 12.0,
        text_member: str = TEXT_MEMBER,
        text_len: int = 512,
        encoders: EncoderPaths | None = None,
        video_vae: VideoVAE | None = None,
        audio_vae: AudioVAE | None = None,
        text_encoder: UMT5TextEncoder | None = None,
        pin_memory: bool = False,
        return_keys: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if num_workers < 0 or val_batches < 0:
            raise ValueError("num_workers and val_batches must be >= 0")
        self.train_urls = expand_shard_urls(train_urls)
        self.val_urls = expand_shard_urls(val_urls) if val_urls else None
        self.sample_config = SampleConfig(
            mode=mode, modality=modality, num_frames=num_frames, target_area=target_area,
            buckets=tuple(tuple(b) for b in buckets) if buckets else None,  # type: ignore[misc]
            max_audio_seconds=max_audio_seconds, text_member=text_member, text_len=text_len,
        )
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.epochs = epochs
        self.val_batches = val_batches
        self.pin_memory = pin_memory
        self.return_keys = return_keys
        self.encoder_paths = encoders
        self.encoders = Encoders(video=video_vae, audio=audio_vae, text=text_encoder)
        self._encoders_loaded = encoders is None
        self.cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "ovi_pl_shards")
        self.skipped_samples = 0  # on this rank, bad samples passed over so far
        # Where this run's training stream started: (global batches consumed, this rank's processed
        # batches) then; set from the checkpoint on resume.
        self._start = (0, 0)
        self._restored: dict[str, Any] | None = None
        self._indexes: dict[tuple[str, ...], SampleIndex] = {}
        self._train: ShardBatchStream | None = None

    # -- loaders ----------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        # Data-parallel rank and size: the ranks of a context-parallel group read the same samples.
        sampler = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        return (sampler["rank"], sampler["num_replicas"]) if sampler else (0, 1)

    def index(self, urls: list[str]) -> SampleIndex:
        """The sample index of a shard set, built on first use (reads tar headers and json)."""
        key = tuple(urls)
        if key not in self._indexes:
            self._indexes[key] = build_index(urls, self.sample_config, self.cache_dir)
        return self._indexes[key]

    def train_stream(self, rank: int | None = None, world_size: int | None = None) -> ShardBatchStream:
        """This rank's training stream, resuming at the restored position."""
        own_rank, own_world = self._rank_world()
        rank, world_size = (own_rank if rank is None else rank), (own_world if world_size is None else world_size)
        self._resume()
        self._train = ShardBatchStream(
            self.index(self.train_urls), self.sample_config, self.batch_size, seed=self.seed, rank=rank,
            world_size=world_size, shuffle=True, epochs=self.epochs, start=self._start[0],
        )
        return self._train

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_stream(), self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_urls or not self.val_batches:
            return []
        rank, world = self._rank_world()
        # Fixed order, endless and cut to val_batches, so every rank runs the same number of
        # forward passes (FSDP gathers weights collectively) and each validation sees the same batches.
        stream = ShardBatchStream(
            self.index(self.val_urls), self.sample_config, self.batch_size, seed=self.seed, rank=rank,
            world_size=world, shuffle=False, epochs=None, limit=self.val_batches,
        )
        return self._loader(stream, 0)

    def _loader(self, stream: ShardBatchStream, num_workers: int) -> DataLoader:
        return DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=self.pin_memory)

    # -- position -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        trainer = self.trainer
        world = self._rank_world()[1]
        # `processed`, not `completed`: checkpoints are written from the end-of-batch hooks, before
        # the current batch counts as completed.
        done = int(trainer.fit_loop.epoch_loop.batch_progress.total.processed) if trainer is not None else 0
        start, start_done = self._start
        position = start + (done - start_done) * world
        if self._train is not None and self._train.total_batches is not None:
            position = min(position, self._train.total_batches)  # a finite stream replayed by another trainer epoch
        return {"global_batches": position, "batches_per_rank": done, "world_size": world,
                "batch_size": self.batch_size, "seed": self.seed, "skipped_samples": self.skipped_samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = dict(state)
        self.skipped_samples = int(state.get("skipped_samples", 0))

    def _resume(self) -> None:
        """Take the position from a restored checkpoint, once."""
        if self._restored is None:
            return
        saved, self._restored = self._restored, None
        done = int(saved["batches_per_rank"])
        changed = {k: (saved.get(k), getattr(self, k)) for k in _ORDER_FIELDS if saved.get(k) != getattr(self, k)}
        if changed:
            # Another batch size or seed is another order; a position in the old one means nothing in it.
            log.warning("data position not restored: %s changed since the checkpoint (saved, now); the data "
                        "order starts again from the beginning", changed)
            self._start = (0, done)
            return
        # Checkpoints from before the global order hold per-rank batches only: continue after as many
        # global batches of this order.
        self._start = (int(saved.get("global_batches", done * int(saved["world_size"]))), done)

    # -- device-side finishing ------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if not self._encoders_loaded and self.sample_config.mode == "raw":
            loaded = Encoders.load(self.encoder_paths)  # type: ignore[arg-type]
            self.encoders = Encoders(video=self.encoders.video or loaded.video,
                                     audio=self.encoders.audio or loaded.audio, text=self.encoders.text or loaded.text)
            self._encoders_loaded = True

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Count skipped samples, then turn raw media into latents with the encoders."""
        skipped = int(batch.pop(SKIPPED_KEY, 0))
        if skipped:
            self.skipped_samples += skipped
            self._log_skipped()
        if not self.return_keys:
            batch.pop("keys", None)
        for key in _FLOAT_KEYS:
            if key in batch and batch[key].dtype != torch.float32:
                batch[key] = batch[key].float()
        if "frames" in batch or "waveform" in batch or "captions" in batch:
            self.setup("fit")
            batch = self.encode_raw(batch)
        return batch

    def encode_raw(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Raw batch (frames / waveform / captions) -> the training batch, on the batch's device."""
        device = next(v.device for v in batch.values() if isinstance(v, torch.Tensor))
        enc = self.encoders.to(device)
        if "frames" in batch:
            enc.require("video")
            batch["video_latents"] = enc.video.encode(stack(batch.pop("frames")))
        if "waveform" in batch:
            waves, lengths = batch.pop("waveform"), batch.pop("waveform_length")
            latents = enc.encode_audio([waves[i, : int(n)] for i, n in enumerate(lengths)])
            batch["audio_latents"], batch["audio_length"] = pad_sequences(latents)
            batch["audio_length"] = batch["audio_length"].to(device)
        captions = batch.pop("captions", None)
        if captions is not None:
            text = [t[: self.sample_config.text_len] for t in enc.encode_text(captions)]
            batch["text_embedding"], _ = pad_sequences(text)
        return batch

    def _log_skipped(self) -> None:
        trainer = self.trainer
        if trainer is None:
            return
        for logger in trainer.loggers:  # rank-zero loggers: this is rank 0's count
            logger.log_metrics({SKIPPED_METRIC: float(self.skipped_samples)}, step=trainer.global_step)
