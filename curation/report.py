"""The run's accounting: a parquet manifest of every record, and a summary (counts, histograms, HTML)."""
from __future__ import annotations

import html
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from .stage import Row

# Row fields copied into a record; media payloads and paths into the work directory are left out.
_RECORD_FIELDS = ("record_type", "input_id", "uri", "key", "clip_index", "num_clips", "scene_index", "start_s",
                  "end_s", "status", "reason", "detail", "error_type", "error", "caption")
# Audio-segment fields, recorded only on rows that have them (runs without audio segments keep their columns).
_OPTIONAL_FIELDS = ("num_audio_segments", "parent_key", "segment_kind", "duration_s")


def make_record(row: Row) -> dict[str, Any]:
    """The manifest record of a row that left the pipeline."""
    record = {k: row.get(k) for k in _RECORD_FIELDS}
    record.update({k: row[k] for k in _OPTIONAL_FIELDS if k in row})
    record["stage"] = row.get("rejected_by")
    record["has_caption"] = bool(record.pop("caption"))
    probe = row.get("probe") or {}
    for k in ("duration_s", "fps", "width", "height", "has_audio"):
        record[f"source_{k}"] = probe.get(k)
    record["scores"] = dict(row.get("scores") or {})
    record["shard"] = None
    return record


def write_manifest(records: list[dict[str, Any]], path: Path) -> None:
    """Records as a parquet table; scores become `score_<name>` columns (null where a stage did not run)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    score_names = sorted({name for r in records for name in r.get("scores", {})})
    columns = list(dict.fromkeys(k for r in records for k in r if k != "scores"))  # every record's fields
    flat = []
    for r in records:
        row = {k: r.get(k) for k in columns}
        row.update({f"score_{n}": r.get("scores", {}).get(n) for n in score_names})
        flat.append(row)
    table = pa.Table.from_pylist(flat) if flat else pa.table({"status": pa.array([], pa.string())})
    tmp = path.with_name(f".tmp-{path.name}")
    pq.write_table(table, tmp)
    tmp.replace(path)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts. `clips`, `kept`, `rejected` and `quarantined` count clip and input records, as they did
    before audio segments existed; audio-only segments are counted apart (`audio_segments` kept,
    `audio_segments_not_kept` rejected or quarantined). `by_reason` and `quarantine` list every record."""
    audio = [r for r in records if r.get("record_type") == "audio_clip"]
    main = [r for r in records if r.get("record_type") != "audio_clip"]
    clips = [r for r in main if r.get("record_type") == "clip"]
    inputs = {r["input_id"] for r in records}
    by_reason = Counter(f"{r['stage']}: {r['reason']}" for r in records if r["status"] != "kept")
    return {
        "inputs": len(inputs),
        "clips": len(clips),
        "kept": sum(r["status"] == "kept" for r in main),
        "rejected": sum(r["status"] == "rejected" for r in main),
        "quarantined": sum(r["status"] == "quarantined" for r in main),
        "audio_segments": sum(r["status"] == "kept" for r in audio),
        "audio_segments_not_kept": sum(r["status"] != "kept" for r in audio),
        "rejected_inputs": sum(r["status"] != "kept" and r.get("record_type") == "input" for r in records),
        "by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "quarantine": [{"uri": r["uri"], "key": r.get("key"), "stage": r["stage"], "error_type": r.get("error_type"),
                        "error": r.get("error")} for r in records if r["status"] == "quarantined"],
    }


def write_report(records: list[dict[str, Any]], report_dir: Path, thresholds: dict[str, float]) -> dict[str, Any]:
    """summary.json, one histogram PNG per score (kept vs rejected) and an index.html linking them."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers or CI
    import matplotlib.pyplot as plt

    report_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(records)
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    images = []
    for name in sorted({n for r in records for n in r.get("scores", {})}):
        kept = [r["scores"][name] for r in records if name in r["scores"] and r["status"] == "kept"]
        other = [r["scores"][name] for r in records if name in r["scores"] and r["status"] != "kept"]
        values = [v for v in kept + other if math.isfinite(v)]
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
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Curation report</title></head><body>
<h1>Curation report</h1>
<p>{summary['inputs']} inputs, {summary['clips']} clips: <b>{summary['kept']} kept</b>, {summary['rejected']} rejected,
{summary['quarantined']} quarantined; {summary['audio_segments']} audio-only segments kept,
{summary['audio_segments_not_kept']} not kept. Records: <a href="../manifest.parquet">manifest.parquet</a>,
<a href="summary.json">summary.json</a>.</p>
<h2>Rejections by stage and reason</h2><table border="1"><tr><th>stage: reason</th><th>count</th></tr>{rows}</table>
<h2>Quarantined</h2><table border="1"><tr><th>input</th><th>stage</th><th>error</th></tr>{quarantine}</table>
<h2>Scores</h2>{''.join(f'<p><a href="{i}"><img src="{i}" alt="{i}"></a></p>' for i in images)}
</body></html>"""
    (report_dir / "index.html").write_text(page)
    summary["images"] = images
    return summary
