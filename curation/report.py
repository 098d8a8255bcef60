"""The run's accounting: a parquet manifest of every record, and a summary (counts, histograms, HTML)."""
from __future__ import annotations

import html
import json
import math
from array import array
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .keys import display_name
from .stage import Row

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
        }

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


def write_report(accounting: RunAccounting, report_dir: Path, thresholds: dict[str, float]) -> dict[str, Any]:
    """summary.json, one histogram PNG per score (kept vs rejected) and an index.html linking them."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers or CI
    import matplotlib.pyplot as plt

    report_dir.mkdir(parents=True, exist_ok=True)
    summary = accounting.summary()
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2))
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
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in summary["by_reason"].items())
    quarantine = "".join(f"<tr><td>{html.escape(q['uri'])}</td><td>{html.escape(str(q['stage']))}</td>"
                         f"<td>{html.escape(str(q['error_type']))}: {html.escape(str(q['error']))}</td></tr>"
                         for q in summary["quarantine"])
    judged = ", ".join(f"{n} {m}" for m, n in summary["sync_methods"].items()) or "no clip reached the sync judges"
    sync = (f"Clips judged by: {html.escape(judged)}. <b>{summary['kept_unverified']} kept clips are unverified</b>: no "
            "judge was confident either way (filters.sync.reject_unverified rejects them).")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Curation report</title></head><body>
<h1>Curation report</h1>
<p>{summary['inputs']} inputs, {summary['clips']} clips: <b>{summary['kept']} kept</b>, {summary['rejected']} rejected,
{summary['quarantined']} quarantined; {summary['audio_segments']} audio-only segments kept,
{summary['audio_segments_not_kept']} not kept. Records: <a href="../manifest.parquet">manifest.parquet</a>,
<a href="summary.json">summary.json</a>.</p>
<h2>Audio-visual sync</h2><p>{sync}</p>
<h2>Rejections by stage and reason</h2><table border="1"><tr><th>stage: reason</th><th>count</th></tr>{rows}</table>
<h2>Quarantined</h2><table border="1"><tr><th>input</th><th>stage</th><th>error</th></tr>{quarantine}</table>
<h2>Scores</h2>{''.join(f'<p><a href="{i}"><img src="{i}" alt="{i}"></a></p>' for i in images)}
</body></html>"""
    (report_dir / "index.html").write_text(page)
    summary["images"] = images
    return summary
