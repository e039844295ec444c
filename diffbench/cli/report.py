"""``python -m diffbench report``: regenerate report.md from a results.csv."""

from __future__ import annotations

import argparse
from typing import Any

from ..report import regenerate
from .options import EXIT_OK, fail

#: exit status when the results cannot be read
EXIT_UNREADABLE = 1


def cmd_report(args: argparse.Namespace) -> int:
    """Regenerate report.md from a results.csv; exit 0, or 1 when the CSV cannot be read."""
    try:
        path = regenerate(args.results, args.out)
    except (OSError, ValueError) as exc:
        return fail(f"cannot read {args.results}: {exc}", EXIT_UNREADABLE)
    print(f"diffbench: report written to {path}")
    return EXIT_OK


def add_command(sub: Any) -> None:
    """Register ``report``."""
    rep = sub.add_parser("report", help="regenerate report.md from a results.csv")
    rep.add_argument("results", metavar="RESULTS.csv")
    rep.add_argument("--out", metavar="DIR", help="where to write report.md (default: next to the CSV)")
    rep.set_defaults(func=cmd_report)
