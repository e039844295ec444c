"""``python -m diffbench fuzz``: differential fuzzing of the methods on random expressions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


#: exit status when the harness itself crashed on an expression
EXIT_CRASHES = 1


def cmd_fuzz(args: argparse.Namespace) -> int:
    """Run the differential fuzzer; exit 0, or 1 when the harness crashed on an expression."""
    out = Path(args.out)

    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            print(f"  {done}/{total}", file=sys.stderr, flush=True)

    from ..fuzz import fuzz  # Hypothesis is imported only when fuzzing

    summary = fuzz(args.n, args.seed, out, args.timeout, progress)
    print(f"diffbench fuzz: {summary['n']} expressions, {summary['findings']} findings, {summary['explained']} "
          f"explained, {summary['crashes']} harness crashes; report: {out / 'fuzz.md'}")
    return EXIT_CRASHES if summary["crashes"] else 0


def add_command(sub: Any) -> None:
    """Register ``fuzz``."""
    parser = sub.add_parser("fuzz", help="differential fuzzing of the methods on random expressions")
    parser.add_argument("--n", type=int, default=100, help="number of expressions (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default="reports/fuzz", metavar="DIR", help="output folder (default reports/fuzz)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="time budget per measurement (default 30)")
    parser.set_defaults(func=cmd_fuzz)
