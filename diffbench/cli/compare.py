"""``python -m diffbench compare``: accuracy changes and significant speed changes between two runs."""

from __future__ import annotations

import argparse
from typing import Any

from ..compare import DEFAULT_DIGITS, DEFAULT_THRESHOLD, compare_runs
from ..errors import UsageError
from .options import EXIT_OK, percent


def cmd_compare(args: argparse.Namespace) -> int:
    """Print accuracy changes and significant speed changes between two runs; exit 0 (2 for unreadable input)."""
    try:
        lines = compare_runs(args.run_a, args.run_b, threshold=args.threshold, digits=args.digits)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print("\n".join(lines))
    return EXIT_OK


def add_command(sub: Any) -> None:
    """Register ``compare``."""
    cmp = sub.add_parser("compare", help="accuracy changes and significant speed changes between two runs",
                         description="Compare two runs (result folders or results CSVs), A the old and B the new: "
                                     "status changes, correct digits gained or lost, and speed changes that are "
                                     "large and significant. Always exits 0 when both can be read.")
    cmp.add_argument("run_a", metavar="RUN_A", help="the first run: a folder holding results.csv, or the CSV")
    cmp.add_argument("run_b", metavar="RUN_B", help="the second run, the same way")
    cmp.add_argument("--threshold", type=percent, default=DEFAULT_THRESHOLD, metavar="PERCENT",
                     help=f"medians must differ by more than this (default {DEFAULT_THRESHOLD * 100:g}%%)")
    cmp.add_argument("--digits", type=float, default=DEFAULT_DIGITS, metavar="D",
                     help=f"correct digits gained or lost that count as a change (default {DEFAULT_DIGITS:g})")
    cmp.set_defaults(func=cmd_compare)
