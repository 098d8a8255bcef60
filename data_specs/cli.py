"""`python -m data_specs schema|validate`: print the JSON Schema, or validate shards."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .schema import render_schema
from .validate import ValidationReport, validate_shards


def _schema(args: argparse.Namespace) -> int:
    text = render_schema()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _print_report(report: ValidationReport) -> None:
    for error in report.shard_errors:
        print(f"SHARD {error.shard}: {error.problem}")
    for bad in report.bad_samples:
        print(f"BAD {bad.shard} key={bad.key}")
        for problem in bad.problems:
            print(f"    - {problem}")
    print(report.summary())


def _validate(args: argparse.Namespace) -> int:
    try:
        report = validate_shards(args.paths)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_specs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    schema = sub.add_parser("schema", help="print the JSON Schema of a sample's .json member")
    schema.add_argument("-o", "--output", help="write to this file instead of stdout")
    schema.set_defaults(func=_schema)
    validate = sub.add_parser("validate", help="validate WebDataset shards; exit 1 if any sample is bad")
    validate.add_argument("paths", nargs="+", help="shard .tar files or directories holding them")
    validate.add_argument("--json", action="store_true", help="print a machine-readable report")
    validate.set_defaults(func=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
