"""The curation report as a curator opens it: headless Chromium (the MLflow UI test's helper) on a report
built from real stage runs of small synthetic inputs: one kept clip, one clip rejected by the motion
filter, one input the probe rejects. The stages run in this process, not on Ray (whose start-up would
cost ~45 s), and their records go into completion markers as a run's do; no shard is written, so every
clip's transcoded file is still in the work directory, as a rejected clip's is after a failed cleanup."""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
from collections import defaultdict
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from curation.config import CurationConfig
from curation.report import PAGE_SIZE, RunAccounting, make_record, write_manifest, write_report
from curation.runner import apply_stage
from curation.stages.area import AreaFilterStage
from curation.stages.discover import DiscoverInputs, read_manifest
from curation.stages.motion import MotionFilterStage
from curation.stages.package import PackageSamples
from curation.stages.probe import ProbeInputs
from curation.stages.scenes import CutClips
from curation.stages.transcode import TranscodeClips
from curation.stages.volume import VolumeFilterStage
from curation.thumbnails import STRIP_FRAMES, STRIP_HEIGHT
from curation.writer import Markers

sys.path.insert(0, str(Path(__file__).parent))
from curation_media import make_synthetic_media
from mlflow_ui import CHROMIUM, rendered_dom

CAPTION = "A colourful test pattern. <AUDCAP>A steady tone.<ENDAUDCAP>"


def _records(out: Path) -> list[dict]:
    return list(Markers(out / "_state").records())


def _report_of(out: Path) -> dict:
    """What a run does once its markers are written: accounting, manifest and report from the markers."""
    markers = Markers(out / "_state")
    accounting = RunAccounting()
    for record in markers.records():
        accounting.add(record)
    write_manifest(markers.records(), accounting.manifest_schema(), out / "manifest.parquet")
    return write_report(accounting, out / "report", {"motion": 0.02})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("report")
    media = make_synthetic_media(root / "media")
    manifest = root / "inputs.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(media[n]), "caption": CAPTION}) + "\n"
                                for n in ("moving", "static", "corrupt")))
    out = root / "out"
    c = CurationConfig.model_validate({"inputs": {"manifest": str(manifest)}, "output": {"dir": str(out)},
                                       "transcode": {"preset": "ultrafast"}, "filters": {"area": {"min_area": 160 * 120}}})
    stages = [ProbeInputs(c.probe, str(out / "_work/downloads")), AreaFilterStage(c.filters.area),
              CutClips(c.scenes, c.clip), TranscodeClips(c.transcode, c.clip, str(out / "_work/clips")),
              VolumeFilterStage(c.filters.volume), MotionFilterStage(c.filters.motion), PackageSamples(c.clip)]
    rows = DiscoverInputs(c.inputs.extensions).process_batch(read_manifest(manifest))
    for stage in stages:
        stage.setup()
        rows = apply_stage(stage, rows)
    by_input = defaultdict(list)
    for row in rows:
        by_input[(row["input_id"], row["uri"])].append(make_record(row))
    for (input_id, uri), records in by_input.items():
        Markers(out / "_state").write(input_id, uri, records)
    return {"root": root, "out": out, "media": media, "summary": _report_of(out)}


def test_stage_time_counts_each_stage_once_per_row_it_was_given(run: dict) -> None:
    stages = run["summary"]["stages"]
    # 3 inputs probed; 2 reach the cut (the corrupt one is rejected); each gives one clip to transcode and
    # motion; only the moving clip reaches package. Probe's time, carried by every clip cut from an input,
    # is shared out among those clips rather than counted once per clip.
    assert {name: s["rows"] for name, s in stages.items()} == {
        "discover": 3, "probe": 3, "area": 2, "scenes": 2, "transcode": 2, "volume": 2, "motion": 2, "package": 1}
    assert list(stages) == ["discover", "probe", "area", "scenes", "transcode", "volume", "motion", "package"]
    assert stages["transcode"]["worker_seconds"] > 0 and stages["transcode"]["rows_per_worker_second"] > 0


def test_strips_leave_the_work_dir_for_the_report_and_clips_link_their_file(run: dict) -> None:
    out = run["out"]
    assert not list((out / "_work/thumbs").iterdir())
    assert sorted(p.name.split("-")[0] for p in (out / "report/thumbs").iterdir()) == ["moving", "static"]
    for page in (out / "report/pages").glob("*.html"):
        for href in re.findall(r'href="(../../_work/clips/[^"]+)"', page.read_text()):
            assert (page.parent / href).resolve().is_file(), href
    (kept,) = (out / "report/pages").glob("*-kept-0001.html")
    assert str(run["media"]["moving"]) in kept.read_text() and "play (work file)" in kept.read_text()
    # Every clip, kept or rejected, also plays in its source at its own span.
    for name, page in (("moving", kept), ("static", next((out / "report/pages").glob("*motion_static-0001.html")))):
        clip = next(r for r in _records(out) if r.get("record_type") == "clip" and r["uri"] == str(run["media"][name]))
        span = f"#t={clip['start_s']:.2f},{clip['end_s']:.2f}"
        assert f'href="{run["media"][name].as_uri()}{span}"' in page.read_text(), name


def test_pages_split_a_series_and_hold_each_record_once(tmp_path: Path) -> None:
    records = [{"input_id": f"in{i}", "uri": f"/v/{i}.mp4", "record_type": "clip", "key": f"v{i}-00000",
                "clip_index": 0, "status": "rejected", "stage": "motion", "reason": "static",
                "detail": f"motion {i} < 0.02", "scores": {"motion": i / 1000}} for i in range(PAGE_SIZE * 2 + 5)]
    kept = {**records[0], "input_id": "kept", "key": "k-00000", "status": "kept", "stage": None, "reason": None,
            "shard": "shard-000007.tar"}
    for record in [*records, kept]:
        Markers(tmp_path / "_state").write(record["input_id"], record["uri"], [record])
    _report_of(tmp_path)
    pages = sorted((tmp_path / "report/pages").glob("*motion*.html"))
    assert [p.name for p in pages] == [f"001-motion_static-000{n}.html" for n in (1, 2, 3)]
    text = [p.read_text() for p in pages]
    assert [len(re.findall(r'class="clip rejected"', t)) for t in text] == [PAGE_SIZE, PAGE_SIZE, 5]
    keys = [k for t in text for k in re.findall(r"<code>(v\d+-00000)</code>", t)]
    assert sorted(keys) == sorted(r["key"] for r in records)
    assert 'href="001-motion_static-0002.html">next' in text[0] and ">previous<" in text[2] and ">next<" not in text[2]
    # A kept clip lives in its shard: the page links the tar and says how to play the member.
    kept_page = (tmp_path / "report/pages/000-kept-0001.html").read_text()
    assert 'href="../../shards/shard-000007.tar"' in kept_page and f"{kept['key']}.mp4 | ffplay" in kept_page


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no {CHROMIUM}: run `make system-deps`")
def test_chromium_shows_a_rejected_input_with_its_reason_and_its_thumbnail(run: dict) -> None:
    root: Path = run["root"]
    index = rendered_dom((run["out"] / "report/index.html").as_uri())
    links = {name: href for href, name in re.findall(r'<a href="(pages/[^"]+)">([^<]+)</a>', index)}
    assert {"kept", "motion: static", "probe: not_media"} <= set(links), index[-3000:]
    # The input the probe rejected is named, with its reason and what to do.
    probe_page = rendered_dom((run["out"] / "report" / links["probe: not_media"]).as_uri())
    assert str(run["media"]["corrupt"]) in probe_page and "rejected by probe: not_media" in probe_page
    assert "if it should be a video, fetch it again" in probe_page
    # The rejected clip's strip, loaded by the browser: a page in an iframe, read by a script of the same
    # origin (a local server: file pages may not read each other).
    (root / "probe.html").write_text(f"""<!doctype html><html><body><pre id="result"></pre>
<iframe id="page" src="out/report/{links['motion: static']}" width="1200" height="800"></iframe><script>
const frame = document.getElementById("page");
frame.onload = () => {{
  const card = frame.contentDocument.querySelector(".clip.rejected"), img = card.querySelector("img");
  const done = () => {{ document.getElementById("result").textContent = JSON.stringify(
      {{text: card.innerText, width: img.naturalWidth, height: img.naturalHeight}}); }};
  if (img.complete) done(); else {{ img.onload = done; img.onerror = done; }}
}};
</script></body></html>""")
    handler = functools.partial(_QuietHandler, directory=str(root))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            dom = rendered_dom(f"http://127.0.0.1:{server.server_address[1]}/probe.html")
        finally:
            server.shutdown()
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.DOTALL)
    assert found and found.group(1), dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<"))
    assert str(run["media"]["static"]) in result["text"] and "rejected by motion: static" in result["text"]
    assert "motion 0" in result["text"], "the clip's scores are shown"
    assert result["height"] == STRIP_HEIGHT and result["width"] > STRIP_FRAMES * STRIP_HEIGHT, result


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the base class's argument names
        pass
