"""Latent stage: precompute each sample's video latents, audio latents and text embedding.

Reads existing shards and writes new ones beside them: same keys, the original members plus
`video_latents.npy` (Wan2.2 VAE, [48, T, H, W] at the clip's stored size and length),
`audio_latents.npy` (MMAudio VAE, [L, 20]) and the text embedding (umT5, [tokens, D], unpadded),
each declared in the sample json's `latents` list as data_specs requires. Training then reads
them with `ShardDataModule(mode="latent")`.

A row is one shard ({"shard": input, "output": path}): a shard is written whole, to a temporary
name renamed into place, so a crash never leaves a half shard, and a rerun skips shards already
done. A sample that fails to encode is left out of its output shard and listed in the row's
`failed`; a shard that cannot be read at all is quarantined by the runner.

    python -m curation.stages.latents --input shards/ --output shards_latents/ \\
        --video-vae ckpts/Wan2.2-TI2V-5B-Diffusers/vae --audio-vae ckpts/MMAudio/v1-16.pth \\
        --text-encoder ckpts/Wan2.2-TI2V-5B-Diffusers/text_encoder --tokenizer .../tokenizer
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from data_specs import AudioVideoSample, find_shards, iter_shard_samples, parse_sample_meta
from data_specs.lineage import DATASET_FILE, read_dataset_file, write_derived_dataset_file
from data_specs.shards import add_sample

from ..stage import Resources, Row, Stage

LatentDType = Literal["float16", "float32"]
log = logging.getLogger(__name__)


class LatentStage(Stage):
    """Model stage (actor pool): encoders are loaded once per actor in setup(), from local paths."""

    name: ClassVar[str] = "latents"
    batch_size: ClassVar[int] = 1

    def __init__(
        self,
        encoders: Any,  # ovi_pl.data.EncoderPaths; typed loosely so importing curation needs no torch
        text_member: str = "text_embedding.npy",
        latent_dtype: LatentDType = "float16",
        actors: int = 1,
        gpus_per_actor: float = 0.0,
        cpus_per_actor: float = 1.0,
        overwrite: bool = False,
    ) -> None:
        if not text_member.endswith(".npy"):
            raise ValueError(f"text_member {text_member!r} must end in .npy")
        for what in ("video_vae", "audio_vae", "text_encoder"):
            if not getattr(encoders, what):
                raise ValueError(f"the latent stage needs encoders.{what} (a local path)")
        self.paths = encoders
        self.text_member = text_member
        self.latent_dtype = latent_dtype
        self.overwrite = overwrite
        self.resources = Resources(cpus=cpus_per_actor, gpus=gpus_per_actor, actors=actors)  # type: ignore[misc]
        self.encoders: Any = None

    def setup(self) -> None:
        import torch

        from ovi_pl.data import Encoders

        device = "cuda" if self.resources.gpus and torch.cuda.is_available() else "cpu"
        self.encoders = Encoders.load(self.paths, device=device)

    def process_batch(self, rows: list[Row]) -> list[Row]:
        return [self.process_shard(row) for row in rows]

    def process_shard(self, row: Row) -> Row:
        """Encode every sample of row["shard"] and write row["output"] atomically."""
        output = Path(row["output"])
        if output.exists() and not self.overwrite:
            return {**row, "skipped_existing": True}
        start = time.monotonic()
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        written, failed = 0, []
        try:
            with tarfile.open(tmp, "w") as tar:
                for sample in iter_shard_samples(row["shard"]):
                    try:
                        members = self.encode_sample(sample.key, sample.members)
                    except Exception as exc:  # noqa: BLE001 - one bad clip must not cost the shard
                        failed.append({"key": sample.key, "error": f"{type(exc).__name__}: {exc}"[:500]})
                        continue
                    add_sample(tar, sample.key, members)  # json first, mtime 0: the same bytes on every run
                    written += 1
            if not written:
                tmp.unlink()
                return self.reject(row, "no_samples", f"no sample of {row['shard']} could be encoded: {failed[:3]}")
            os.replace(tmp, output)  # atomic on one filesystem: readers never see a partial shard
        finally:
            tmp.unlink(missing_ok=True)
        return {**row, "samples": written, "failed": failed, "seconds": round(time.monotonic() - start, 3)}

    def encode_sample(self, key: str, members: dict[str, bytes]) -> dict[str, bytes]:
        """A sample's members with the latents and text embedding added (replacing older ones)."""
        import torch

        from ovi_pl.data import AUDIO_MEMBER, VIDEO_MEMBER
        from ovi_pl.data.samples import SampleConfig, materialise, plan_sample
        from ovi_pl.data.tar_reader import TarSample

        if self.encoders is None:
            self.setup()
        meta = parse_sample_meta(members["json"], source=f"{key}.json")
        with_video = isinstance(meta, AudioVideoSample)
        # Raw-mode loading at the clip's own size and length: the latents must match the json's
        # media description (data_specs checks the video grid against num_frames x height x width).
        config = SampleConfig(
            mode="raw", modality="audio_video" if with_video else "audio",
            num_frames=meta.media.video.num_frames if with_video else 1,
            buckets=((meta.media.video.height, meta.media.video.width),) if with_video else None,
            max_audio_seconds=meta.media.duration_s,
        )
        # Without older .npy members, so the caption is always encoded afresh.
        sample = TarSample(shard="", key=key, members={e: d for e, d in members.items() if not e.endswith(".npy")})
        loaded = materialise(plan_sample(sample, config), config)
        arrays: dict[str, torch.Tensor] = {}
        if with_video:
            arrays[VIDEO_MEMBER] = self.encoders.video.encode(loaded["frames"].unsqueeze(0))[0]
        arrays[AUDIO_MEMBER] = self.encoders.encode_audio([loaded["waveform"]])[0]
        arrays[self.text_member] = self.encoders.encode_text([meta.caption])[0]

        out = {ext: data for ext, data in members.items() if ext not in arrays}
        declared = [m.model_dump() for m in meta.latents if m.name not in arrays]
        for name, tensor in arrays.items():
            array = tensor.detach().float().cpu().numpy().astype(self.latent_dtype)
            if not np.isfinite(array).all():
                raise ValueError(f"{name} has non-finite values (overflow in {self.latent_dtype}?)")
            buf = io.BytesIO()
            np.save(buf, array, allow_pickle=False)
            out[name] = buf.getvalue()
            declared.append({"name": name, "dtype": self.latent_dtype, "shape": list(array.shape)})
        new_meta = json.loads(members["json"])  # the original json, only `latents` changes
        new_meta["latents"] = declared
        parse_sample_meta(new_meta, source=f"{key}.json with latents")  # never write a sample the spec refuses
        out["json"] = json.dumps(new_meta, sort_keys=True).encode()
        return out


def shard_rows(input_dir: str | Path, output_dir: str | Path) -> list[Row]:
    """One row per input shard, its output at the same relative path under output_dir."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if input_dir.resolve() == output_dir.resolve():
        raise ValueError("--output must differ from --input: the stage writes new shards")
    rows = []
    for shard in find_shards([input_dir]):
        rel = shard.relative_to(input_dir) if input_dir.is_dir() else Path(shard.name)
        rows.append({"key": str(rel.with_suffix("")).replace(os.sep, "_"), "shard": str(shard),
                     "output": str(output_dir / rel)})
    return rows


def run_latent_stage(input_dir: str | Path, output_dir: str | Path, stage: LatentStage) -> list[Row]:
    """Run `stage` over every shard under input_dir on Ray Data: on the Ray already initialised, the cluster
    RAY_ADDRESS names, or a new local one."""
    import ray.data

    from ovi_pl.ray_cluster import join_or_start_ray
    from ..runner import add_stage, decode_rows, encode_rows

    rows = shard_rows(input_dir, output_dir)
    join_or_start_ray()
    # One block per shard, so the actor pool gets the shards one by one.
    ds = ray.data.from_arrow(encode_rows(rows)).repartition(len(rows))
    ds = add_stage(ds, stage)
    out: list[Row] = []
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        out += decode_rows(batch)
    out.sort(key=lambda r: r["shard"])
    write_latent_lineage(Path(input_dir), Path(output_dir), stage, out)
    return out


def write_latent_lineage(input_dir: Path, output_dir: Path, stage: LatentStage, rows: list[Row]) -> None:
    """`output_dir/dataset.json` naming the curated shard set the latents were made from, so a training run
    on latent shards still traces back to its curation run. Skipped, with a warning, where the input has no
    `dataset.json` (shards curated before lineage, or not by this pipeline)."""
    source = input_dir / DATASET_FILE
    if not source.is_file():
        log.warning("%s is missing: the latent shards get no dataset.json, and training on them logs no dataset id",
                    source)
        return
    paths = dataclasses.asdict(stage.paths)
    # Checkpoints are named, not located: the same weights elsewhere make the same data.
    settings = {k: Path(v).name if k in ("video_vae", "audio_vae", "text_encoder", "tokenizer") and v else v
                for k, v in paths.items()}
    config = {"stage": stage.name, "encoders": settings, "text_member": stage.text_member,
              "latent_dtype": stage.latent_dtype}
    written = [r for r in rows if r.get("status", "kept") == "kept"]
    summary = {"shards": len(written), "samples": sum(r.get("samples", 0) for r in written),
               "failed_samples": sum(len(r.get("failed", [])) for r in written), "failed_shards": len(rows) - len(written)}
    write_derived_dataset_file(output_dir, read_dataset_file(source), config, summary,
                               [str(Path(r["output"]).relative_to(output_dir)) for r in written])


def main(argv: list[str] | None = None) -> int:
    from ovi_pl.data import EncoderPaths
    from ovi_pl.encoders import AudioVAEConfig

    p = argparse.ArgumentParser(prog="python -m curation.stages.latents", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="directory of .tar shards (searched recursively)")
    p.add_argument("--output", required=True, help="directory for the new shards (same relative paths)")
    p.add_argument("--video-vae", required=True, help="diffusers directory of the Wan2.2 VAE")
    p.add_argument("--audio-vae", required=True, help="MMAudio v1-16.pth (the vocoder is not needed to encode)")
    p.add_argument("--audio-vae-config", help="yaml of AudioVAEConfig fields that differ from the released model")
    p.add_argument("--text-encoder", required=True, help="transformers directory of the umT5 encoder")
    p.add_argument("--tokenizer", help="tokenizer directory (default: --text-encoder)")
    p.add_argument("--text-len", type=int, default=512, help="tokens the prompt is encoded at (default 512)")
    p.add_argument("--text-member", default="text_embedding.npy")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="encoder compute dtype")
    p.add_argument("--latent-dtype", choices=["float16", "float32"], default="float16", help="stored dtype")
    p.add_argument("--actors", type=int, default=1)
    p.add_argument("--gpus-per-actor", type=float, default=0.0)
    p.add_argument("--overwrite", action="store_true", help="re-encode shards whose output exists")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    args = p.parse_args(argv)

    paths = EncoderPaths(video_vae=args.video_vae, audio_vae=args.audio_vae, text_encoder=args.text_encoder,
                         tokenizer=args.tokenizer, dtype=args.dtype, text_len=args.text_len,
                         audio_config=AudioVAEConfig.from_yaml(args.audio_vae_config) if args.audio_vae_config
                         else AudioVAEConfig())
    stage = LatentStage(paths, text_member=args.text_member, latent_dtype=args.latent_dtype, actors=args.actors,
                        gpus_per_actor=args.gpus_per_actor, overwrite=args.overwrite)
    if args.ray_address:
        from ovi_pl.ray_cluster import join_or_start_ray

        join_or_start_ray(args.ray_address)
    rows = run_latent_stage(args.input, args.output, stage)
    bad = 0
    for row in rows:
        status = row.get("status", "kept")
        failed = row.get("failed", [])
        bad += status != "kept" or bool(failed)
        detail = row.get("reason") or ("exists, skipped" if row.get("skipped_existing") else
                                       f"{row.get('samples', 0)} samples, {len(failed)} failed")
        print(f"{row['shard']} -> {row['output']}: {status}, {detail}")
        for f in failed:
            print(f"  {f['key']}: {f['error']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
