"""Command line: ``python -m diffbench <command>``; each command is a function of its own."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .case import default_cases_path, load_cases, select

#: exit codes of ``run`` (documented in the README)
EXIT_OK = 0
EXIT_UNEXPECTED = 1  # --strict: a row's status is not what its case expects
EXIT_USAGE = 2  # bad options, an unusable or locked --out, a --resume folder from other cases
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); SIGTERM gives 143 (128 + SIGTERM)
#: the default run's small scaling section: this case, at these sizes, with this budget per variant
SCALING_CASE = "rosenbrock"
SCALING_SIZES = (10, 100, 1000)
SCALING_BUDGET_S = 4.0
SCALING_VARIANTS = (("symbolic", ("numpy", "symengine")), ("tape", ("function", "xla")), ("finite", ("central",)))


def _usage_error(message: str) -> NoReturn:
    """Print a one-line error and exit with EXIT_USAGE."""
    print(f"diffbench: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _timeout(text: str) -> float:
    """argparse type of --timeout: seconds >= 0 (0 or inf: no limit)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or a positive number of seconds, got {text!r}")
    return 0.0 if math.isinf(value) else value


def _jobs(text: str) -> int:
    """argparse type of --jobs: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _keyword(text: str) -> Any:
    """argparse type of -k: a pytest-style expression (``safe and not wrong``), parsed once."""
    from .keywords import KeywordError, KeywordExpression

    try:
        return KeywordExpression.parse(text)
    except KeywordError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _percent(text: str) -> float:
    """argparse type of compare --threshold: a positive percentage (``50`` or ``50%``) as a fraction."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive percentage, got {text!r}")
    return value / 100


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _variants(items: list[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items or []:
        method, sep, names = item.partition("=")
        if not sep or not names:
            _usage_error(f"--variants takes METHOD=V1,V2 (e.g. tape=eager,function), got {item!r}")
        out[method.strip()] = _split(names) or []
    return out


def _load(args: argparse.Namespace) -> list[Any]:
    path = Path(args.cases) if args.cases else default_cases_path()
    from .quiet import stderr_captured

    try:
        # a case file that imports TensorFlow or Keras would print their start-up lines here
        with stderr_captured():
            cases = load_cases(path)
    except FileNotFoundError as exc:
        _usage_error(f"{exc}; pass --cases FILE_OR_FOLDER")
    chosen = select(cases, getattr(args, "k", None), _split(getattr(args, "tags", None)))
    if not chosen:
        _usage_error(f"no case in {path} matches -k '{args.k}'" if getattr(args, "k", None) else f"no cases in {path}")
    return chosen


def cmd_run(args: argparse.Namespace) -> int:
    """Measure the cases and write report.md, results.csv and results.jsonl into the out folder.

    Returns EXIT_OK, EXIT_UNEXPECTED (--strict), or 128 + the signal that interrupted it;
    exits with EXIT_USAGE for bad options or an out folder it cannot use.
    """
    from .harness import make_config
    from .runner import FolderLocked, lock_folder

    try:
        config = make_config(_split(args.methods), _split(args.dtypes), _variants(args.variants), args.profile,
                             not args.no_order2, args.timeout)
    except (KeyError, ValueError) as exc:
        _usage_error(exc.args[0])
    out = Path(args.resume or args.out)
    if args.resume and not (out / "results.jsonl").is_file():
        _usage_error(f"--resume {out}: no results.jsonl there to resume")
    # checked before any case is loaded or measured, so a bad --out costs nothing
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(lock_folder(out))
        except FolderLocked as exc:
            _usage_error(str(exc))
        except OSError as exc:
            _usage_error(_unusable_out(out, exc))
        return _run_locked(args, config, out)


def _unusable_out(out: Path, exc: OSError) -> str:
    """One line saying why ``out`` cannot be the out folder."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file, not a folder; choose a folder"
    blocker = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocker is not None:
        return f"--out {out} lies under {blocker}, which is a file; choose a folder"
    return f"cannot write to --out {out}: {exc.strerror or exc}"


def _run_locked(args: argparse.Namespace, config: Any, out: Path) -> int:
    import pandas as pd

    from . import report
    from .case import matches
    from .harness import COLUMNS, finish, key_of
    from .progress import RunProgress
    from .runner import (Interrupts, ScaleTask, append_rows, manifest_cases, read_rows, rewrite_rows, run_isolated,
                         signals_deferred, write_manifest)

    cases_path = Path(args.cases) if args.cases else default_cases_path()
    cases = _load(args)
    journal = out / "results.jsonl"
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    if args.resume:
        recorded = manifest_cases(out)
        old_rows = read_rows(journal)
        names = {c.name for c in cases}
        other = (recorded != str(cases_path.resolve())) if recorded is not None else \
            bool(old_rows) and not names & {r["case"] for r in old_rows}
        if other and not args.force:
            _usage_error(f"--resume {out}: its rows come from other cases ({recorded or 'none of the selected'}), "
                         f"not {cases_path}; pass --force to resume it anyway, or choose another folder")
        current = {c.name: (c.source_hash if c.func else "") for c in cases}
        changed = sorted({r["case"] for r in old_rows if r["case"] in current
                          and r.get("source_hash") != current[r["case"]]})
        for row in old_rows:
            if row["case"] not in changed:
                rows[key_of(row)] = row
        # the journal is rewritten without stale rows and torn lines, so a later resume reads what the report shows
        rewrite_rows(journal, list(rows.values()))
        print(f"diffbench: resuming {out}: {len(rows)} rows already measured"
              + (f"; re-measuring {len(changed)} changed case(s): {', '.join(changed)}" if changed else ""),
              file=sys.stderr)
    else:
        journal.write_text("")
    write_manifest(out, cases_path)
    names = {c.name for c in cases}
    done_cases = {r["case"] for r in rows.values()}
    scaling, scale_rows = None, []
    sized = [c for c in cases if c.name == SCALING_CASE and c.sizes and not c.problem]
    if sized and not args.no_scale:
        scaling = (sized[0], ScaleTask(SCALING_SIZES, tuple(m for m in config.methods), SCALING_BUDGET_S,
                                       SCALING_VARIANTS))
    began = time.perf_counter()
    bar = RunProgress(_planned_rows(cases, config, set(rows)), extra_tasks=int(scaling is not None))

    def keep(new_rows: list[dict[str, Any]]) -> None:
        with signals_deferred():  # a row is in the journal and the report, or in neither
            append_rows(journal, new_rows)
            for row in new_rows:
                rows[key_of(row)] = row
        bar.rows(new_rows)

    gpus: list[str] = []
    try:
        with Interrupts() as interrupts:
            complete = run_isolated(cases, config, args.jobs, keep, set(rows), bar.case_done, gpus, scaling,
                                    scale_rows.extend)
    finally:
        bar.close()
    df = pd.DataFrame([r for r in rows.values() if r["case"] in names or r["case"] in done_cases], columns=COLUMNS)
    df = finish(df)
    df = report.with_environment(df, report.environment(gpus, config.profile))
    path = report.write(df, out, scale=pd.DataFrame(scale_rows) if scale_rows else None)
    counts = report.measurements(df)["status"].value_counts().to_dict()
    # the same sentence as the report's first line, so the two counts cannot differ
    print(f"diffbench: {report.row_counts(df)} in {time.perf_counter() - began:.1f} s "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())}); report: {path}")
    if not complete:
        print("diffbench: interrupted; the report holds every row that finished "
              f"(continue with: python -m diffbench run --resume {out}"
              f"{' --cases ' + str(args.cases) if args.cases else ''})", file=sys.stderr)
        return interrupts.exit_code
    if args.strict:
        unexpected = [r for r in df.to_dict("records") if not matches(str(r["status"]), str(r["expected"] or "ok"))]
        if unexpected:
            print(f"diffbench: --strict: {len(unexpected)} row(s) differ from what their case expects:",
                  file=sys.stderr)
            for r in unexpected[:20]:
                print(f"  {r['case']} {r['method']}/{r['variant']} {r['dtype']} order {r['order']}: expected "
                      f"{r['expected'] or 'ok'}, got {r['status']}", file=sys.stderr)
            return EXIT_UNEXPECTED
    return EXIT_OK


def _planned_rows(cases: list[Any], config: Any, measured: set[tuple[Any, ...]]) -> dict[str, int]:
    """How many measurement rows each case name is expected to add (its plan on the CPU, less rows already
    measured); a case that cannot run adds its one error row. The progress bar corrects this as cases finish."""
    from .harness import plan

    planned: dict[str, int] = {}
    for one in cases:
        if one.name in planned and not (one.problem or one.func is None):
            continue
        if one.problem or one.func is None or not one.source_file:
            planned.setdefault(one.name, 1)
            continue
        try:
            keys = {(one.name, *unit) for unit in plan(one, config, {})}
        except Exception:  # noqa: BLE001 - an engine that cannot load: its rows say why; the bar corrects
            keys = set()
        planned[one.name] = len(keys - measured)
    return planned


def cmd_list(args: argparse.Namespace) -> int:
    """Print each case with its tags and input shapes."""
    for one in _load(args):
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in one.inputs.items())
        flag = f"  PROBLEM: {one.problem}" if one.problem else ""
        native = " [+tensorflow]" if one.native else ""
        print(f"{one.name}({shapes}){native}  tags: {', '.join(one.tags) or '-'}{flag}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Regenerate report.md from a results.csv."""
    from .report import regenerate

    try:
        path = regenerate(args.results, args.out)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"diffbench: cannot read {args.results}: {exc}") from None
    print(f"diffbench: report written to {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Print accuracy changes and significant speed changes between two runs; exit 0 (2 for unreadable input)."""
    from .compare import compare_runs

    try:
        lines = compare_runs(args.run_a, args.run_b, threshold=args.threshold, digits=args.digits)
    except (OSError, ValueError) as exc:
        _usage_error(str(exc))
    print("\n".join(lines))
    return EXIT_OK


def _add_case_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", metavar="PATH", help="a case file or a folder of them (default: the repository's "
                                                        "cases/)")
    parser.add_argument("-k", metavar="EXPRESSION", type=_keyword,
                        help="only cases matching a pytest-style expression: words joined with and/or/not and "
                             "parentheses, each word a substring of the case's name or of one of its tags, "
                             "ignoring case (e.g. -k 'softplus and not naive')")
    parser.add_argument("--tags", metavar="T1,T2", help="only cases with one of these tags")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up messages (silenced by default, in every worker)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m diffbench``."""
    from .harness import DEFAULT_TIMEOUT_S

    parser = argparse.ArgumentParser(prog="python -m diffbench", description=(
        "Compare symbolic (SymPy), automatic (TensorFlow) and finite-difference derivatives of the same "
        "functions against a certified high-precision reference."))
    from . import __version__

    parser.add_argument("--version", action="version", version=f"diffbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="measure cases and write a report")
    _add_case_options(run)
    run.add_argument("--methods", metavar="M1,M2", help="methods to run (default symbolic,tape,finite; also jax, "
                                                        "torch)")
    run.add_argument("--dtypes", metavar="D1,D2", help="float32 and/or float64 (default both)")
    run.add_argument("--variants", metavar="METHOD=V1,V2", action="append",
                     help="only these variants of a method, e.g. tape=eager,function (repeatable)")
    run.add_argument("--out", metavar="DIR", default="reports/latest", help="output folder (default reports/latest)")
    run.add_argument("--profile", choices=["quick", "full"], default="quick",
                     help="timing effort: quick (default; short samples) or full (longer, tighter statistics)")
    run.add_argument("--timeout", type=_timeout, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                     help="time budget per measurement; past it the worker is stopped and the row is a timeout "
                          f"(default {DEFAULT_TIMEOUT_S:g}; 0 means no limit)")
    run.add_argument("--jobs", type=_jobs, default=2, metavar="N",
                     help="worker processes (default 2; use 1 for the least timing interference)")
    run.add_argument("--resume", metavar="DIR", help="continue an interrupted run in DIR, skipping measured rows "
                                                     "and re-measuring cases whose source changed")
    run.add_argument("--force", action="store_true",
                     help="with --resume: resume even a folder whose rows come from another case set")
    run.add_argument("--strict", action="store_true",
                     help="exit 1 when any row's status differs from what its case expects (expect=)")
    run.add_argument("--no-order2", action="store_true", help="skip second-derivative (Hessian) rows")
    run.add_argument("--no-scale", action="store_true",
                     help="skip the report's small scaling section (rosenbrock at n = 10, 100, 1000, when selected)")
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="print each case with its tags and input shapes")
    _add_case_options(lst)
    lst.set_defaults(func=cmd_list)

    rep = sub.add_parser("report", help="regenerate report.md from a results.csv")
    rep.add_argument("results", metavar="RESULTS.csv")
    rep.add_argument("--out", metavar="DIR", help="where to write report.md (default: next to the CSV)")
    rep.set_defaults(func=cmd_report)

    from .compare import DEFAULT_DIGITS, DEFAULT_THRESHOLD

    cmp = sub.add_parser("compare", help="accuracy changes and significant speed changes between two runs",
                         description="Compare two runs (result folders or results CSVs), A the old and B the new: "
                                     "status changes, correct digits gained or lost, and speed changes that are "
                                     "large and significant. Always exits 0 when both can be read.")
    cmp.add_argument("run_a", metavar="RUN_A", help="the first run: a folder holding results.csv, or the CSV")
    cmp.add_argument("run_b", metavar="RUN_B", help="the second run, the same way")
    cmp.add_argument("--threshold", type=_percent, default=DEFAULT_THRESHOLD, metavar="PERCENT",
                     help=f"medians must differ by more than this (default {DEFAULT_THRESHOLD * 100:g}%%)")
    cmp.add_argument("--digits", type=float, default=DEFAULT_DIGITS, metavar="D",
                     help=f"correct digits gained or lost that count as a change (default {DEFAULT_DIGITS:g})")
    cmp.set_defaults(func=cmd_compare)

    from . import fuzz, scale, testing

    testing.add_commands(sub, _add_case_options)
    scale.add_command(sub, _add_case_options)
    fuzz.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from .quiet import VERBOSE_ENV

    args = build_parser().parse_args(argv)
    # TensorFlow's C++ start-up notices (CUDA probing, oneDNN) say nothing the report does not; set
    # before any worker starts, so every process that imports TensorFlow inherits the choice
    if getattr(args, "verbose", False):
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("diffbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (``list | head``): say nothing more, and keep the interpreter's
        # final flush of stdout from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
