"""Command line: ``python -m diffbench <command>``; one module per command.

This package is the only place that prints for a command and the only one that ends it:
library code raises :class:`~diffbench.errors.DiffbenchError`, and :func:`main` turns what
a command leaves uncaught into one ``diffbench: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .. import __version__
from ..errors import DiffbenchError
from ..quiet import VERBOSE_ENV
from . import compare, fuzz, gate, listing, report, run, scale
from .options import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, fail

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_UNEXPECTED", "EXIT_USAGE", "EXIT_INTERRUPTED"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m diffbench``."""
    parser = argparse.ArgumentParser(prog="python -m diffbench", description=(
        "Compare symbolic (SymPy), automatic (TensorFlow) and finite-difference derivatives of the same "
        "functions against a certified high-precision reference."))
    parser.add_argument("--version", action="version", version=f"diffbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_command(sub)
    listing.add_command(sub)
    report.add_command(sub)
    compare.add_command(sub)
    gate.add_commands(sub)
    scale.add_command(sub)
    fuzz.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    # TensorFlow's C++ start-up notices (CUDA probing, oneDNN) say nothing the report does not; set
    # before any worker starts, so every process that imports TensorFlow inherits the choice
    if getattr(args, "verbose", False):
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return int(args.func(args) or 0)
    except DiffbenchError as exc:
        return fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        print("diffbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (``list | head``): say nothing more, and keep the interpreter's
        # final flush of stdout from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
