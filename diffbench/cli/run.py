"""``python -m diffbench run``: measure the cases and write the report."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..harness import make_config
from ..runner import lock_folder
from ..selection import cases_path, load_selected
from ..results import Status
from .options import (EXIT_OK, EXIT_UNEXPECTED, EXIT_UNMEASURED, add_case_options, add_engine_option, add_jobs_option,
                      add_measurement_options, add_timeout_option, engine_options, split, variants)

#: the default run's small scaling section: this case, at these sizes, with this budget per variant
SCALING_CASE = "rosenbrock"
SCALING_SIZES = (10, 100, 1000)
SCALING_BUDGET_S = 4.0


def cmd_run(args: argparse.Namespace) -> int:
    """Measure the cases and write report.md, results.csv and results.jsonl into the out folder.

    Returns EXIT_OK, EXIT_UNEXPECTED (--strict), EXIT_UNMEASURED (a case of which no row could be measured),
    or 128 + the signal that interrupted it;
    raises UsageError for bad options or an out folder it cannot use.
    """
    chosen_variants = variants(args.variants)
    try:
        config = make_config(split(args.methods), split(args.dtypes), chosen_variants, args.profile,
                             not args.no_order2, args.timeout, engine_options=engine_options(args.engine_option),
                             memory_bytes=args.memory)
    except (KeyError, ValueError) as exc:
        raise UsageError(exc.args[0]) from None
    out = Path(args.resume or args.out)
    if args.resume and not (out / "results.jsonl").is_file():
        raise UsageError(f"--resume {out}: no results.jsonl there to resume")
    # checked before any case is loaded or measured, so a bad --out costs nothing
    with contextlib.ExitStack() as stack:
        try:  # a folder another run holds raises FolderLocked, a UsageError's sibling: the same one line
            stack.enter_context(lock_folder(out))
        except OSError as exc:
            raise UsageError(_unusable_out(out, exc)) from None
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

    from .. import report
    from ..case import matches
    from ..engines import run_scaling_variants
    from ..scale import study as scale_study
    from ..harness import finish, key_of
    from ..results import COLUMNS, as_record
    from ..progress import RunProgress
    from ..runner import (Interrupts, ScaleTask, append_rows, manifest_cases, read_rows, rewrite_rows, run_isolated,
                          signals_deferred, write_manifest)

    where = cases_path(args.cases)
    cases = load_selected(args.cases, args.k, split(args.tags), realistic=args.profile == "full")
    journal = out / "results.jsonl"
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    if args.resume:
        recorded = manifest_cases(out)
        old_rows = read_rows(journal)
        names = {c.name for c in cases}
        other = (recorded != str(where.resolve())) if recorded is not None else \
            bool(old_rows) and not names & {r["case"] for r in old_rows}
        if other and not args.force:
            raise UsageError(f"--resume {out}: its rows come from other cases ({recorded or 'none of the selected'}), "
                             f"not {where}; pass --force to resume it anyway, or choose another folder")
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
    write_manifest(out, where)
    names = {c.name for c in cases}
    done_cases = {r["case"] for r in rows.values()}
    scaling, scale_rows = None, []
    sized = [c for c in cases if c.name == SCALING_CASE and c.sizes and not c.problem]
    if sized and not args.no_scale:
        scaling = (sized[0], ScaleTask(SCALING_SIZES, tuple(m for m in config.methods), SCALING_BUDGET_S,
                                       run_scaling_variants(config.methods), study=scale_study))
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
                                    scale_rows.extend, notify=lambda text: print(text, file=sys.stderr),
                                    started=bar.started)
    finally:
        bar.close()
    df = pd.DataFrame([as_record(r) for r in rows.values() if r["case"] in names or r["case"] in done_cases],
                      columns=COLUMNS)
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
        unexpected = [r for r in df.to_dict("records") if not matches(str(r["status"]), str(r["expected"] or Status.OK))]
        if unexpected:
            print(f"diffbench: --strict: {len(unexpected)} row(s) differ from what their case expects:",
                  file=sys.stderr)
            for r in unexpected[:20]:
                print(f"  {r['case']} {r['method']}/{r['variant']} {r['dtype']} order {r['order']}: expected "
                      f"{r['expected'] or 'ok'}, got {r['status']}", file=sys.stderr)
            return EXIT_UNEXPECTED
    unmeasured = unmeasured_cases(df.to_dict("records"))
    if unmeasured:
        print(f"diffbench: {len(unmeasured)} case(s) could not be measured at all (every row is an error or a "
              f"timeout): {', '.join(unmeasured[:20])}{' ...' if len(unmeasured) > 20 else ''}; their diagnoses are "
              "in the report", file=sys.stderr)
        return EXIT_UNMEASURED
    return EXIT_OK


def unmeasured_cases(records: list[dict[str, Any]]) -> list[str]:
    """The names of the cases of which no row was measured (each row ``error`` or ``timeout``, or only a case
    note), unless every one of those rows is what the case expects (``expect=``)."""
    from ..case import matches
    from ..results import SWEEP, UNMEASURED_STATUSES

    by_case: dict[str, list[dict[str, Any]]] = {}
    for row in records:
        if row.get("method") != SWEEP:
            by_case.setdefault(str(row["case"]), []).append(row)
    out = []
    for name, rows in by_case.items():
        if all(str(r["status"]) in UNMEASURED_STATUSES for r in rows) and \
                not all(matches(str(r["status"]), str(r.get("expected") or Status.OK)) for r in rows):
            out.append(name)
    return out


def _planned_rows(cases: list[Any], config: Any, measured: set[tuple[Any, ...]]) -> dict[str, int]:
    """How many measurement rows each case name is expected to add (its plan on the CPU, less rows already
    measured); a case that cannot run adds its one error row. The progress bar corrects this as cases finish."""
    from ..harness import plan

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


def add_command(sub: Any) -> None:
    """Register ``run``."""
    run = sub.add_parser("run", help="measure cases and write a report")
    add_case_options(run)
    add_measurement_options(run)
    run.add_argument("--out", metavar="DIR", default="reports/latest", help="output folder (default reports/latest)")
    run.add_argument("--profile", choices=["quick", "full"], default="quick",
                     help="timing effort: quick (default; short samples) or full (longer, tighter statistics, and the "
                          "cases tagged realistic and gradbench)")
    add_timeout_option(run)
    add_engine_option(run)
    add_jobs_option(run)
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
