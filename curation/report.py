"""The run's accounting: a parquet manifest of every record, and a summary (counts, histograms, HTML)."""
from __future__ import annotations

import html
import json
import math
import os
import re
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .keys import display_name
from .stage import KEPT, STAGE_TIME, Row
from .thumbnails import STRIP_HEIGHT

# Row fields copied into a record; media payloads and paths into the work directory are left out.
_RECORD_FIELDS = ("record_type", "input_id", "uri", "key", "clip_index", "num_clips", "scene_index", "start_s",
                  "end_s", "status", "reason", "detail", "error_type", "error", "caption")
# Audio-segment fields, recorded only on rows that have them (runs without audio segments keep their columns).
_OPTIONAL_FIELDS = ("num_audio_segments", "parent_key", "segment_kind", "duration_s", "sync_method", "sync_verified")


def make_record(row: Row) -> dict[str, Any]:
    """The manifest record of a row that left the pipeline.

    Text fields are made printable (`display_name`): a name or an error message can hold the bytes of a
    non-UTF-8 file name, which parquet, JSON readers and terminals cannot take.
    """
    record = {k: _printable(row.get(k)) for k in _RECORD_FIELDS}
    record.update({k: _printable(row[k]) for k in _OPTIONAL_FIELDS if k in row})
    record["stage"] = row.get("rejected_by")
    record["has_caption"] = bool(record.pop("caption"))
    probe = row.get("probe") or {}
    for k in ("duration_s", "fps", "width", "height", "has_audio"):
        record[f"source_{k}"] = probe.get(k)
    record["scores"] = dict(row.get("scores") or {})
    record[STAGE_TIME] = list(row.get(STAGE_TIME) or [])
    record["shard"] = None
    return record


def _printable(value: Any) -> Any:
    return display_name(value) if isinstance(value, str) else value


class RunAccounting:
    """One pass over the run's records, streamed from the completion markers: counts, score values for
    the histograms and each manifest column's value types. Records are not kept, so a million-clip
    run costs a few bytes per record here, not the records themselves."""

    def __init__(self) -> None:
        self.inputs: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        self.sync_methods: Counter[str] = Counter()               # clips by the judge that decided their sync
        self.quarantine: list[dict[str, Any]] = []
        self.scores: dict[str, tuple[array, array]] = {}          # name -> (kept values, other values)
        self.column_types: dict[str, set[str]] = {}               # manifest column -> python type names
        self.stage_time: dict[str, list[float]] = {}              # stage -> [worker seconds, rows given]

    def add(self, record: dict[str, Any]) -> None:
        self.inputs.add(record["input_id"])
        kind = "audio" if record.get("record_type") == "audio_clip" else "main"
        status = record["status"]
        self.counts[f"{kind}_{status}"] += 1
        self.counts["clips"] += record.get("record_type") == "clip"
        self.counts["rejected_inputs"] += status != "kept" and record.get("record_type") == "input"
        if status != "kept":
            self.by_reason[f"{record['stage']}: {record['reason']}"] += 1
        if record.get("sync_method"):
            self.sync_methods[record["sync_method"]] += 1
            self.counts["kept_unverified"] += status == "kept" and not record.get("sync_verified")
        if status == "quarantined":
            self.quarantine.append({"uri": record["uri"], "key": record.get("key"), "stage": record["stage"],
                                    "error_type": record.get("error_type"), "error": record.get("error")})
        for name, value in record.get("scores", {}).items():
            self.scores.setdefault(name, (array("d"), array("d")))[status != "kept"].append(float(value))
        for name, seconds, rows in record.get(STAGE_TIME) or ():
            total = self.stage_time.setdefault(name, [0.0, 0.0])
            total[0] += seconds
            total[1] += rows
        for key, value in record.items():
            if key != "scores":
                self.column_types.setdefault(key, set()).add(type(value).__name__)

    def summary(self) -> dict[str, Any]:
        """Counts. `clips`, `kept`, `rejected` and `quarantined` count clip and input records, as they did
        before audio segments existed; audio-only segments are counted apart (`audio_segments` kept,
        `audio_segments_not_kept` rejected or quarantined). `by_reason` and `quarantine` list every record."""
        c = self.counts
        return {
            "inputs": len(self.inputs),
            "clips": c["clips"],
            "kept": c["main_kept"],
            "rejected": c["main_rejected"],
            "quarantined": c["main_quarantined"],
            "audio_segments": c["audio_kept"],
            "audio_segments_not_kept": c["audio_rejected"] + c["audio_quarantined"],
            "rejected_inputs": c["rejected_inputs"],
            "sync_methods": dict(sorted(self.sync_methods.items())),
            "kept_unverified": c["kept_unverified"],
            "by_reason": dict(sorted(self.by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
            "quarantine": self.quarantine,
            "stages": self.stage_summary(),
        }

    def stage_summary(self) -> dict[str, dict[str, float]]:
        """Per stage, in the order rows met them: rows given to it, worker seconds (summed over all workers,
        so stages that ran side by side can add up to more than the run's wall time) and rows per worker
        second. Rows are the stage's input: inputs for the stages before the cut, clips after it."""
        return {name: {"rows": round(rows, 3), "worker_seconds": round(seconds, 3),
                       "rows_per_worker_second": round(rows / seconds, 3) if seconds > 0 else None}
                for name, (seconds, rows) in self.stage_time.items()}

    def manifest_schema(self) -> Any:
        """Record fields in first-seen order, then one float `score_<name>` column per score."""
        import pyarrow as pa

        fields = [pa.field(k, _arrow_type(kinds)) for k, kinds in self.column_types.items()]
        fields += [pa.field(f"score_{n}", pa.float64()) for n in sorted(self.scores)]
        return pa.schema(fields or [pa.field("status", pa.string())])


def _arrow_type(kinds: set[str]) -> Any:
    """The parquet type of a column from the python types of its values; mixed or nested: JSON text."""
    import pyarrow as pa

    kinds = kinds - {"NoneType"}
    if kinds == {"int", "float"}:
        return pa.float64()
    simple = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    return simple[next(iter(kinds))] if len(kinds) == 1 and kinds <= simple.keys() else pa.string()


def write_manifest(records: Iterable[dict[str, Any]], schema: Any, path: Path, batch_rows: int = 8192) -> None:
    """Records as a parquet table, written in batches: scores become `score_<name>` columns (null where
    a stage did not run). `schema` comes from `RunAccounting.manifest_schema` over the same records."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def cell(value: Any, type_: Any) -> Any:
        if value is None or isinstance(value, str) or not pa.types.is_string(type_):
            return value
        return json.dumps(value, default=str)

    def flat(record: dict[str, Any]) -> dict[str, Any]:
        scores = record.get("scores", {})
        return {f.name: cell(scores.get(f.name.removeprefix("score_")) if f.name.startswith("score_")
                             else record.get(f.name), f.type) for f in schema}

    tmp = path.with_name(f".tmp-{path.name}")
    with pq.ParquetWriter(tmp, schema) as writer:
        batch: list[dict[str, Any]] = []
        for record in records:
            batch.append(flat(record))
            if len(batch) >= batch_rows:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    tmp.replace(path)


# Clip pages: this many records a page, so a page stays light at any run size (100k clips -> 1,000 files).
PAGE_SIZE = 100
# Record columns the clip pages show; scores are every `score_*` column.
_PAGE_COLUMNS = ("uri", "key", "record_type", "clip_index", "start_s", "end_s", "status", "stage", "reason", "detail",
                 "error_type", "error", "sync_method", "sync_verified", "shard")
_STYLE = f"""<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}td,th{{border:1px solid
#ccc;padding:2px 6px;text-align:left}}.clip{{display:flex;gap:10px;margin:6px 0;padding:4px;border-left:6px solid #2a2}}
.clip.rejected{{border-color:#c22}}.clip.quarantined{{border-color:#c80}}.clip img{{height:{STRIP_HEIGHT}px}}
.none{{width:100px;height:{STRIP_HEIGHT}px;background:#eee;color:#777;font-size:small;display:flex;align-items:center;
justify-content:center}}.meta{{font-size:small}}.why{{color:#a00}}</style>"""


def write_report(accounting: RunAccounting, report_dir: Path, thresholds: dict[str, float]) -> dict[str, Any]:
    """The run's report under `report_dir` (`<output.dir>/report`): summary.json, one histogram PNG per
    score (kept vs rejected), an index.html with counts and per-stage time, and clip pages.

    Clip pages (`pages/`) show every record of `<output.dir>/manifest.parquet`, `PAGE_SIZE` a page, one
    series of pages for the kept records and one per stage and reason of the others, each with its
    thumbnail strip, verdict (reason, and the detail that says the fix), scores and a link to the media.
    The manifest is read in batches, so memory stays flat at any number of clips.
    """
    output_dir = report_dir.parent
    manifest = output_dir / "manifest.parquet"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} does not exist: the report's clip pages are read from the run's "
                                "manifest; write it with write_manifest before write_report, as pipeline.run does")
    report_dir.mkdir(parents=True, exist_ok=True)
    summary = accounting.summary()
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    images = _histograms(accounting, report_dir, thresholds)
    groups = {"kept": accounting.counts["main_kept"] + accounting.counts["audio_kept"], **summary["by_reason"]}
    pages = _ClipPages(report_dir, groups, _collect_strips(output_dir, report_dir / "thumbs"),
                       _names_in(output_dir / "_work" / "clips"))
    for record in _manifest_records(manifest):
        pages.add(record)
    pages.finish()
    (report_dir / "index.html").write_text(_index_page(summary, images, pages))
    summary["images"] = images
    return summary


def _histograms(accounting: RunAccounting, report_dir: Path, thresholds: dict[str, float]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # no display on workers or CI
    import matplotlib.pyplot as plt

    images = []
    for name, (kept, other) in sorted(accounting.scores.items()):
        values = [v for v in (*kept, *other) if math.isfinite(v)]
        if not values:
            continue
        fig, ax = plt.subplots(figsize=(5, 3))
        bins = 30 if max(values) > min(values) else 1
        ax.hist([kept, other], bins=bins, stacked=True, label=["kept", "rejected"], color=["tab:green", "tab:red"])
        if name in thresholds:
            ax.axvline(thresholds[name], color="black", linestyle="--", label="threshold")
        ax.set_title(name)
        ax.set_xlabel(name)
        ax.set_ylabel("records")
        ax.legend()
        fig.tight_layout()
        fig.savefig(report_dir / f"hist_{name}.png", dpi=80)
        plt.close(fig)
        images.append(f"hist_{name}.png")
    return images


def _collect_strips(output_dir: Path, thumbs: Path) -> set[str]:
    """Move the strips transcode left in `_work/thumbs` into the report's `thumbs`; the names there.
    A rerun's strips replace the old ones of the same key (keys are deterministic)."""
    from .thumbnails import work_thumbs_dir

    thumbs.mkdir(parents=True, exist_ok=True)
    waiting = work_thumbs_dir(output_dir / "_work" / "clips")
    for name in _names_in(waiting):
        if not name.startswith("."):  # a strip ffmpeg is still writing, or a killed run left
            os.replace(waiting / name, thumbs / name)
    return _names_in(thumbs)


def _names_in(directory: Path) -> set[str]:
    return set(os.listdir(directory)) if directory.is_dir() else set()


def _manifest_records(manifest: Path, batch_rows: int = 8192) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(manifest)
    names = table.schema_arrow.names
    columns = [c for c in names if c in _PAGE_COLUMNS or c.startswith("score_")]
    for batch in table.iter_batches(batch_size=batch_rows, columns=columns):
        yield from batch.to_pylist()


class _ClipPages:
    """Writes the clip pages as records stream in, holding at most one page of each series in memory.
    The series' sizes come from the accounting, so each page links its next one before that exists."""

    def __init__(self, report_dir: Path, sizes: dict[str, int], strips: set[str], work_clips: set[str]):
        self.dir = report_dir / "pages"
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.html"):  # a rerun's series may be shorter or gone
            stale.unlink()
        self.sizes = {name: n for name, n in sizes.items() if n}
        self.slugs = {name: f"{i:03d}-{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}"
                      for i, name in enumerate(self.sizes)}
        self.strips = strips
        self.work_clips = work_clips
        self.buffers: dict[str, list[str]] = {name: [] for name in self.sizes}
        self.written: dict[str, int] = dict.fromkeys(self.sizes, 0)

    def page_count(self, series: str) -> int:
        return max(1, math.ceil(self.sizes[series] / PAGE_SIZE))

    def first_page(self, series: str) -> str:
        return f"pages/{self.slugs[series]}-0001.html"

    def add(self, record: dict[str, Any]) -> None:
        series = "kept" if record["status"] == KEPT else f"{record['stage']}: {record['reason']}"
        if series not in self.buffers:
            raise ValueError(f"manifest record {record.get('key') or record['uri']} ({series}) is not in the "
                             "run's accounting: the manifest and the markers it was written from disagree; "
                             "rerun the pipeline to rewrite both")
        buffer = self.buffers[series]
        buffer.append(self._card(record))
        if len(buffer) == PAGE_SIZE:
            self._write(series)

    def finish(self) -> None:
        for series, buffer in self.buffers.items():
            if buffer or not self.written[series]:
                self._write(series)

    def _write(self, series: str) -> None:
        self.written[series] += 1
        n, total = self.written[series], self.page_count(series)
        slug = self.slugs[series]
        nav = " | ".join([*([f'<a href="{slug}-{n - 1:04d}.html">previous</a>'] if n > 1 else []),
                          f"page {n} of {total}", *([f'<a href="{slug}-{n + 1:04d}.html">next</a>'] if n < total else []),
                          '<a href="../index.html">report</a>'])
        title = html.escape(series)
        (self.dir / f"{slug}-{n:04d}.html").write_text(
            f'<!doctype html><html><head><meta charset="utf-8"><title>{title} ({n}/{total})</title>{_STYLE}</head>'
            f"<body><h1>{title}: {self.sizes[series]} record{'s' if self.sizes[series] != 1 else ''}</h1><p>{nav}</p>{''.join(self.buffers[series])}"
            f"<p>{nav}</p></body></html>")
        self.buffers[series] = []

    def _card(self, r: dict[str, Any]) -> str:
        key = r.get("key")
        strip = f"{key}.jpg" if key else None
        picture = (f'<img src="../thumbs/{quote(strip)}" alt="{html.escape(key)}">' if strip in self.strips else
                   f'<div class="none">{"audio only" if r.get("record_type") == "audio_clip" else "no picture"}</div>')
        what = "input" if r.get("record_type") == "input" else (
            f"{'audio segment' if r.get('record_type') == 'audio_clip' else 'clip'} {r.get('clip_index') or 0}"
            + (f", {r['start_s']:.2f}-{r['end_s']:.2f} s" if r.get("start_s") is not None and r.get("end_s") is not None
               else ""))
        verdict = "kept"
        if r["status"] != KEPT:
            verdict = f'<span class="why">{html.escape(r["status"])} by {html.escape(str(r["stage"]))}: ' \
                      f'{html.escape(str(r["reason"]))}</span>'
            if r.get("error_type"):
                verdict += f" {html.escape(str(r['error_type']))}: {html.escape(str(r.get('error')))}"
            if r.get("detail"):
                verdict += f" ({html.escape(str(r['detail']))})"
        scores = ", ".join(f"{k.removeprefix('score_')} {_number(v)}" for k, v in sorted(r.items())
                           if k.startswith("score_") and v is not None)
        if r.get("sync_method"):
            scores += f"{', ' if scores else ''}sync {r['sync_method']} " \
                      f"({'verified' if r.get('sync_verified') else 'unverified'})"
        return (f'<div class="clip {html.escape(r["status"])}">{picture}<div class="meta"><b>{html.escape(r["uri"])}'
                f"</b> {html.escape(what)}{f' <code>{html.escape(key)}</code>' if key else ''}<br>{verdict}<br>"
                f"{html.escape(scores) or 'no scores'}<br>{self._media_link(r)}</div></div>")

    def _media_link(self, r: dict[str, Any]) -> str:
        key = r.get("key")
        if r["status"] == KEPT and r.get("shard"):
            member = f"{key}.{'flac' if r.get('record_type') == 'audio_clip' else 'mp4'}"
            link = (f'in <a href="../../shards/{quote(r["shard"])}">{html.escape(r["shard"])}</a>: '
                    f"<code>tar -xOf shards/{html.escape(r['shard'])} {html.escape(member)} | ffplay -</code>")
        elif key and f"{key}.mp4" in self.work_clips:
            link = f'<a href="../../_work/clips/{quote(key)}.mp4">play (work file)</a>'
        else:
            link = "media not kept"
        return link + _source_span_link(r)


def _source_span_link(r: dict[str, Any]) -> str:
    """A link that plays the clip's span in its local source (a media fragment, `#t=start,end`, which browsers
    honour), so every clip can be watched in the browser, kept or rejected, whatever became of its own file."""
    start, end, uri = r.get("start_s"), r.get("end_s"), r.get("uri") or ""
    if start is None or end is None or not os.path.isabs(uri):
        return ""
    return f' | <a href="{Path(uri).as_uri()}#t={start:.2f},{end:.2f}">play {start:.2f}-{end:.2f} s in the source</a>'


def _number(value: float | None) -> str:
    if not isinstance(value, float):
        return "-" if value is None else str(value)
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _index_page(summary: dict[str, Any], images: list[str], pages: _ClipPages) -> str:
    stages = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{s['rows']:g}</td><td>{s['worker_seconds']:.1f}</td>"
        f"<td>{_number(s['rows_per_worker_second'])}</td>"
        f"<td>{100 * s['worker_seconds'] / max(sum(t['worker_seconds'] for t in summary['stages'].values()), 1e-9):.0f} %"
        "</td></tr>" for name, s in summary["stages"].items())
    series = "".join(f'<tr><td><a href="{pages.first_page(name)}">{html.escape(name)}</a></td><td>{count}</td>'
                     f"<td>{pages.page_count(name)}</td></tr>" for name, count in pages.sizes.items())
    judged = ", ".join(f"{n} {m}" for m, n in summary["sync_methods"].items()) or "no clip reached the sync judges"
    sync = (f"Clips judged by: {html.escape(judged)}. <b>{summary['kept_unverified']} kept clips are unverified</b>: no "
            "judge was confident either way (filters.sync.reject_unverified rejects them).")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Curation report</title>{_STYLE}</head><body>
<h1>Curation report</h1>
<p>{summary['inputs']} inputs, {summary['clips']} clips: <b>{summary['kept']} kept</b>, {summary['rejected']} rejected,
{summary['quarantined']} quarantined; {summary['audio_segments']} audio-only segments kept,
{summary['audio_segments_not_kept']} not kept. Records: <a href="../manifest.parquet">manifest.parquet</a>,
<a href="summary.json">summary.json</a>.</p>
<h2>Records by verdict</h2><p>Every input and clip, {PAGE_SIZE} a page, with its thumbnail strip, scores, the reason it
was not kept and the fix where there is one. Kept clips live inside their shard (a browser cannot play a tar member:
the page gives the command); every clip of a local source also links that source at the clip's span.</p>
<table><tr><th>kept, or stage: reason</th><th>records</th><th>pages</th></tr>{series}</table>
<h2>Time per stage</h2><p>Worker seconds summed over all workers (stages run side by side), rows given to the stage
(inputs before the cut, clips after), and rows per worker second.</p>
<table><tr><th>stage</th><th>rows</th><th>worker s</th><th>rows / worker s</th><th>share</th></tr>{stages}</table>
<h2>Audio-visual sync</h2><p>{sync}</p>
<h2>Scores</h2>{''.join(f'<p><a href="{i}"><img src="{i}" alt="{i}"></a></p>' for i in images)}
</body></html>"""
