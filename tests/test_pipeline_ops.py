"""Operating a curation run: stages that cannot fit the cluster fail before work, a stalled run names the
stages it waits on, and a downloaded URL input is deleted as soon as its clips are cut."""
from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from conftest import SAMPLE_CLIPS  # noqa: E402
from curation_media import local_ray_cluster  # noqa: E402


@pytest.fixture(scope="module")
def ray_2cpus() -> Iterator[None]:
    """One 2-CPU cluster for this module's tests (its start-up costs more than they do)."""
    with local_ray_cluster():
        yield


def test_actor_pools_that_leave_no_cpu_for_the_task_stages_fail_before_any_work(tmp_path: Path,
                                                                                 ray_2cpus: None) -> None:
    """Two aesthetic actors of 1 CPU each on a 2-CPU cluster: the task stages could never run (the run would
    stall). The run must stop before processing anything and name the settings to change; a GPU per actor on
    a cluster without GPUs is reported in the same message."""
    from curation.cluster import ClusterTooSmallError
    from curation.pipeline import run
    from curation.preflight import load_config

    for name in ("clip.pt", "head.pth"):
        (tmp_path / name).write_bytes(b"not loaded: the run stops first")
    out = tmp_path / "out"
    config = {"inputs": {"paths": [str(SAMPLE_CLIPS[0])]}, "output": {"dir": str(out)},
              "filters": {"aesthetic": {"enabled": True, "environment": "main", "actors": 2, "gpus_per_actor": 1,
                                        "clip_weights": str(tmp_path / "clip.pt"),
                                        "head_weights": str(tmp_path / "head.pth")}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ClusterTooSmallError) as err:
        run(load_config(tmp_path / "cfg.yaml"))  # joins the fixture's 2-CPU cluster
    message = str(err.value)
    for expected in ("hold 2 of the cluster's 2 CPUs", "aesthetic: 2 actor(s) x 1 CPU (filters.aesthetic.actors)",
                     "ray.num_cpus", "need 2 GPUs", "filters.aesthetic.gpus_per_actor", "the cluster has 0"):
        assert expected in message, (expected, message)
    assert not list((out / "_state" / "done").glob("*.json")) and not list((out / "shards").iterdir())
    assert "stages do not fit" in (out / "run.log").read_text(), "the failure is in the run log too"


def test_a_stalled_run_fails_naming_the_stage_it_waits_on(ray_2cpus: None) -> None:
    """A stage whose batch never returns: after ray.stall_timeout_s with nothing moving the run raises,
    saying which stage has a batch running and where rows wait, instead of waiting forever."""
    import ray

    from curation.pipeline import PipelineStalledError, stream_rows
    from curation.progress import StageCounters
    from curation_media import Hang, TaskOfEachRow

    rows = [{"status": "kept", "n": n} for n in range(3)]
    list(stream_rows(rows, [TaskOfEachRow()]))  # workers started: their start-up is no stall
    counters = ray.remote(num_cpus=0)(StageCounters).remote()
    with pytest.raises(PipelineStalledError) as err:
        list(stream_rows(rows, [TaskOfEachRow(), Hang()], counters=counters, stall_timeout_s=5))
    message = str(err.value)
    assert "for 5 s" in message and "ray.stall_timeout_s" in message
    # Both CPUs hold a hung batch; the third row waits for a CPU to run its first stage.
    assert "hang 0 rows, 0 kept, 2 running" in message, message
    assert "task_of_each_row 2 rows, 2 kept, ~1 waiting" in message, message


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffmpeg is not installed")
def test_a_downloaded_input_is_deleted_when_its_clips_are_cut_not_when_its_shard_closes(tmp_path: Path) -> None:
    """A memory:// URL is fetched as s3:// or gs:// are: copied into _work/downloads by the probe stage (run
    in this process, where the memory file system lives). Once its last row is in, the copy goes, while its
    kept clip still waits in an open shard; the marker comes when that shard is written."""
    import fsspec

    from curation.config import CurationConfig, ProbeConfig
    from curation.pipeline import OutputCollector, RunPaths
    from curation.stages.discover import DiscoverInputs
    from curation.stages.probe import ProbeInputs
    from curation.writer import write_shard

    paths = RunPaths(tmp_path / "out")
    config = CurationConfig.model_validate({"inputs": {"paths": ["x"]}, "output": {"shard_max_samples": 10}})
    collector = OutputCollector(paths, config, total_inputs=1)
    with fsspec.open("memory://bucket/videos/clip.mp4", "wb") as f:
        f.write(SAMPLE_CLIPS[0].read_bytes())
    (row,) = DiscoverInputs([".mp4"]).process_batch([{"spec": "memory://bucket/videos"}])
    (probed,) = ProbeInputs(ProbeConfig(), str(paths.downloads)).process_batch([row])
    download = Path(probed["path"])
    assert probed["status"] == "kept" and download.parent == paths.downloads and download.is_file()
    paths.clips.mkdir(parents=True)
    work = {ext: paths.clips / f"k-00000.{ext}" for ext in ("mp4", "flac")}
    for path in work.values():
        path.write_bytes(b"clip bytes")
    clip = {**probed, "record_type": "clip", "key": "k-00000", "num_clips": 1, "sample_json": "{}",
            "mp4_path": str(work["mp4"]), "flac_path": str(work["flac"])}
    assert collector.add(clip) == [], "one sample does not fill a shard of 10"
    assert not download.exists(), "the input's clips are cut: its downloaded copy is deleted"
    assert collector.finished == 1 and collector.markers.done_ids() == set(), "its clip is not in a shard yet"
    (spec,) = collector.flush()
    collector.shard_written(write_shard(str(paths.shards), spec))
    assert collector.markers.done_ids() == {probed["input_id"]}
    assert not any(path.exists() for path in work.values())
    collector.check_all_committed()


def test_a_retried_shard_write_keeps_the_shard_and_a_late_one_never_overwrites(tmp_path: Path) -> None:
    """Ray reruns a write whose worker died, possibly after the rename and after the work files went: the
    shard stays as it is. A different shard of the same name (a killed run's write that finished late) is
    an error, never a silent overwrite of samples whose markers may already name it."""
    import tarfile

    from curation.writer import ShardSample, ShardSpec, write_shard

    def spec(key: str) -> ShardSpec:
        flac = tmp_path / f"{key}.flac"
        flac.write_bytes(b"audio of " + key.encode())
        return ShardSpec("shard-000000.tar", (ShardSample(key, "{}", {"flac": str(flac)}),))

    shards = tmp_path / "shards"
    shards.mkdir()
    first = spec("a-00000")
    assert write_shard(str(shards), first).keys == ["a-00000"]
    assert not (tmp_path / "a-00000.flac").exists(), "the worker deletes the work files it packed"
    before = (shards / "shard-000000.tar").read_bytes()
    assert write_shard(str(shards), first).keys == ["a-00000"], "the retry finds its shard in place"
    assert (shards / "shard-000000.tar").read_bytes() == before
    with pytest.raises(FileExistsError, match="other samples"):
        write_shard(str(shards), spec("b-00000"))
    with tarfile.open(shards / "shard-000000.tar") as tar:
        assert tar.getnames() == ["a-00000.json", "a-00000.flac"]
