"""``python -m diffbench snapshot`` and ``check``: the baseline and the CI gate (see diffbench.testing)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import BaselineError, UsageError
from ..selection import cases_path, load_selected, probe_case_files
from ..slowdown import SlowerCheck, calibration_s, machine_load
from ..testing import (CHECK_EXIT_CODES, DEFAULT_BASELINE, EXIT_BASELINE, EXIT_INTERRUPTED, EXIT_OK, case_entry,
                       compare, gate_config, measure_isolated, read_baseline, remeasurer, unmeasured_note,
                       write_baseline)
from .options import (add_case_options, add_jobs_option, add_measurement_options, add_timeout_option, fail, split,
                      variants)


def _selection(args: argparse.Namespace, timing: bool) -> tuple[list[Any], Any]:
    """The cases and harness configuration the options select; raises UsageError for bad ones."""
    probe_case_files(cases_path(args.cases), max(float(args.timeout or 0), 0.0) + 300.0)
    cases = load_selected(args.cases, args.k, split(args.tags))
    chosen_variants = variants(args.variants)
    try:
        config = gate_config(split(args.methods), split(args.dtypes), chosen_variants, timing, args.timeout,
                             args.profile)
    except (KeyError, ValueError) as exc:
        raise UsageError(exc.args[0] if exc.args else str(exc)) from None
    return cases, dataclasses.replace(config, memory_bytes=args.memory)


def _unwritable(path: Path) -> str | None:
    """Why a file cannot be written at ``path`` (checked before the work, not after), or None."""
    if path.is_dir():
        return "it is a folder"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is not a folder"
            return None if os.access(parent, os.W_OK | os.X_OK) else f"{parent} is not writable"
    return None


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Write a baseline for the selected cases; exit 0, 2 for bad options, 130 when interrupted."""
    try:
        cases, config = _selection(args, not args.no_timing)
    except UsageError as exc:
        return fail(str(exc), EXIT_BASELINE)
    path = Path(args.baseline)
    problem = _unwritable(path)
    if problem:
        print(f"diffbench snapshot: cannot write the baseline to {path}: {problem}; pass another --baseline",
              file=sys.stderr)
        return EXIT_BASELINE
    data = write_baseline(cases, path, methods=list(config.methods), dtypes=list(config.dtypes),
                          variants={m: list(v) for m, v in config.variants.items()}, timing=config.timing,
                          timeout=args.timeout, profile=args.profile, jobs=args.jobs, memory=args.memory)
    if data is None:
        print("diffbench: interrupted; no baseline written", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"diffbench: baseline for {len(cases)} cases written to {path}")
    note = unmeasured_note(data)
    if note:
        print(f"diffbench: {note}", file=sys.stderr)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Measure and compare with the baseline; exit 0 (match), 1 (regression), 2 (nothing comparable), 3 (slower)."""
    try:
        baseline = read_baseline(Path(args.baseline))
        cases, config = _selection(args, args.fail_slower is not None)
    except BaselineError as exc:
        print(f"diffbench check: {exc}", file=sys.stderr)
        return EXIT_BASELINE
    except UsageError as exc:
        return fail(str(exc), EXIT_BASELINE)
    load = machine_load()
    measured = measure_isolated(cases, config, args.jobs, notify=lambda text: print(text, file=sys.stderr))
    if measured is None:
        print("diffbench check: interrupted; nothing was compared", file=sys.stderr)
        return EXIT_INTERRUPTED
    current = {c.name: case_entry(c, measured.get(c.name, [])) for c in cases}

    def selected(method: str, variant: str, dtype: str) -> bool:
        return method in config.methods and dtype in config.dtypes and variant in config.variants_of(method)

    calibration = calibration_s() if args.fail_slower is not None else None
    remeasure = remeasurer(cases, args.timeout)
    code, lines = compare(baseline, current, args.fail_slower, selected, calibration, remeasure, load)
    text = "\n".join(lines).rstrip("\n") + "\n"
    print(text, end="")
    if args.summary:
        try:
            Path(args.summary).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"diffbench check: cannot write --summary {args.summary}: {exc.strerror or exc}", file=sys.stderr)
            return code or EXIT_BASELINE
    return code


def add_commands(sub: Any) -> None:
    """Register ``snapshot`` and ``check``."""
    for name, func, text in (("snapshot", cmd_snapshot, "write a baseline of every case's gradients"),
                             ("check", cmd_check, "compare gradients with the baseline (exit 0 match, 1 regression, "
                                                  "2 baseline unusable or nothing to compare, 3 slower)")):
        parser = sub.add_parser(name, help=text, epilog=CHECK_EXIT_CODES if name == "check" else None)
        add_case_options(parser)
        parser.add_argument("--baseline", default=str(DEFAULT_BASELINE), metavar="FILE",
                            help=f"baseline file (default {DEFAULT_BASELINE}, relative to the current folder)")
        add_measurement_options(parser)
        add_timeout_option(parser)
        add_jobs_option(parser)
        parser.add_argument("--profile", choices=["quick", "full"], default="quick",
                            help="timing effort (default quick); use the same for snapshot and check")
        if name == "snapshot":
            parser.add_argument("--no-timing", action="store_true", help="do not record times (no --fail-slower)")
        else:
            parser.add_argument("--fail-slower", metavar="STAT:PERCENT", type=SlowerCheck.parse,
                                help="also fail (exit 3) when a row's median or min time grew by more than PERCENT "
                                     "and the slowdown is confirmed by timing the row again interleaved with a fixed "
                                     "twin workload, e.g. median:20%% (needs a timed baseline); exit 2 when the "
                                     "machine is too noisy to tell")
            parser.add_argument("--summary", metavar="FILE", help="also write the markdown summary to FILE")
        parser.set_defaults(func=func)
