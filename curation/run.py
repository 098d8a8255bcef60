"""Command line: `python curation/run.py --config configs/curation.yaml` (or `python -m curation.run`).

Runs on an in-process Ray cluster unless RAY_ADDRESS is set or the config names `ray.address`;
under `ray job submit --working-dir . -- python curation/run.py --config ...` it joins the
job's cluster unchanged. Rerunning with the same config resumes where a killed run stopped.
Progress and one line per finished input go to stdout and to `output.dir/run.log`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Started as a script: make the repository root importable (the project is not pip-installed
    # everywhere, e.g. in a Ray job's working_dir).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation.config import ConfigError  # noqa: E402
from curation.preflight import load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="curation.run", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="YAML config (see configs/curation.yaml)")
    parser.add_argument("--check", action="store_true", help="validate the config and list the inputs, then stop")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from curation.cluster import ClusterTooSmallError
    from curation.pipeline import PipelineStalledError, discover, run
    from curation.stages.discover import InputNotFoundError, missing_local_paths

    try:
        missing = missing_local_paths(config.inputs.paths)
        if missing:  # a typo in the config: say so before the output directory is made
            raise InputNotFoundError.listing(missing)
        if args.check:
            inputs = discover(config)
            print(f"config OK; {len(inputs)} inputs")
            _print_discovery(inputs, config)
            return 0
        _log_to_stdout()
        run(config)
    except (InputNotFoundError, ClusterTooSmallError) as exc:  # found before any work: fix and rerun
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PipelineStalledError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0  # quarantined inputs are in the report; they do not fail the run


def _log_to_stdout() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[curation] %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("curation")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _print_discovery(inputs: list[dict], config) -> None:
    """What --check found besides the count: inputs rejected by name alone, and uncaptioned ones."""
    from collections import Counter

    rejected = [r for r in inputs if r.get("status") != "kept"]
    for reason, count in sorted(Counter(r["reason"] for r in rejected).items()):
        print(f"  {count:6d} rejected at discovery: {reason}")
    for row in rejected[:20]:
        print(f"         {row['uri']}: {row['reason']}: {row.get('detail', '')}")
    if len(rejected) > 20:
        print(f"         ... and {len(rejected) - 20} more (all are in manifest.parquet after a run)")
    uncaptioned = sum(not r.get("caption") for r in inputs if r.get("status") == "kept")
    if uncaptioned and not config.captions.enabled:
        print(f"  {uncaptioned:6d} inputs have no caption and captions.enabled is false: their clips will be "
              "rejected as package: uncaptioned (give captions in the manifest or enable captions)")


if __name__ == "__main__":
    sys.exit(main())
