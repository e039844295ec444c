"""Regression tests on gradients: baselines and the CI gate, and ``assert_gradients``.

``snapshot`` measures the selected cases in isolated worker processes (the runner of
``run``, with its hard time budget) and writes the baseline (format and version history
in :mod:`diffbench.baseline`). ``check`` measures them the same way, the gradients
travelling back from the workers, and compares. It fails closed: a row that could not be
measured, or a selection the baseline cannot be compared with, is never a pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .baseline import (FINGERPRINT_ENTRIES, JACOBIAN_FULL_ENTRIES, PROJECTIONS, SCHEMA_VERSION, BaselineError,
                       fingerprint, read_baseline, row_norms, stored_in_full)
from .case import load_cases, make_case, matches
from . import results
from .diagnose import DifferencesTruth, judge
from .harness import DEFAULT_TIMEOUT_S, budget, make_config
from .metrics import describe_inputs, tolerance
from .results import Status
from .slowdown import (PAIRED_ROUNDS, SESSIONS, TWIN, SlowerCheck, calibration_s, describe_load, machine_drift,
                       machine_load)

__all__ = ["SCHEMA_VERSION", "BaselineError", "read_baseline", "write_baseline", "compare", "assert_gradients"]

DEFAULT_BASELINE = Path(".diffbench") / "baseline.json"
#: exit codes of ``check``: match, gradient regression, baseline unusable or nothing to compare, slowdown
EXIT_OK, EXIT_REGRESSION, EXIT_BASELINE, EXIT_SLOWER = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
CHECK_EXIT_CODES = ("exit status: 0 every selected row matches the baseline; 1 a gradient or status regressed, or a "
                    "row could not be measured; 2 the baseline is missing, malformed, of another version or stale, "
                    "or there is nothing to compare for part of the selection, or an option is bad, or a row "
                    "--fail-slower flagged was too noisy to tell; 3 only confirmed slowdowns (--fail-slower); "
                    "130 interrupted")
#: statuses whose rows carry no gradient; for the others a baseline row without one compares nothing
NO_GRADIENT_STATUSES = results.NO_GRADIENT_STATUSES
#: statuses meaning the row could not be measured at all
UNMEASURED_STATUSES = results.UNMEASURED_STATUSES
ROW_FIELDS = ("method", "variant", "dtype", "status", "rel_error", "gradient", "time_median_s", "time_min_s",
              "time_samples_s", "twin_sessions")
#: a fingerprinted Jacobian row k is flagged when the mean square of its PROJECTIONS projection changes
#: exceeds this factor × (tol·‖J[k, :]‖)²: χ²₈'s 0.999 quantile over 8 (scipy.stats.chi2.ppf(0.999, 8) / 8).
#: For standard normal directions each change ΔJ[k, :]·v_j is N(0, ‖ΔJ[k, :]‖²), so their mean square over
#: ‖ΔJ[k, :]‖² is χ²₈/8: over the choice of seed, a row moved by exactly the tolerance is flagged with
#: probability 1e-3 (less, fast, for smaller moves), and one moved by 10× the tolerance is missed with
#: probability 1.1e-5
PROJECTION_FACTOR = 3.2655601947970174
#: a row's key in the gate: (case name, method, variant, dtype)
RowKey = tuple[str, str, str, str]
#: re-measures rows against the twin, one session each: (keys, rounds) -> key -> (gradient samples, twin samples)
#: or why not
Remeasure = Callable[[list[RowKey], int], dict[RowKey, Any]]


# --------------------------------------------------------------------------- measuring
def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _as_list(array: Any) -> Any:
    return [_clean(v) for v in np.asarray(array, dtype=np.float64).ravel()]


def gate_config(methods: list[str] | None, dtypes: list[str] | None, variants: dict[str, list[str]] | None,
                timing: bool, timeout: float, profile: str = "quick") -> Any:
    """The harness configuration of snapshot and check: order 1, CPU, gradients kept, no step sweep.

    Raises KeyError or ValueError for an unknown method, variant or dtype.
    """
    return make_config(methods, dtypes, variants, profile, False, timeout, timing, devices=("CPU",),
                       keep_gradients=True, sweep=False)


def output_shape_of(row: dict[str, Any]) -> list[int] | None:
    """A row's output shape as a list of ints (from the column's text ``(3,)`` or a baseline's list), or None
    for a scalar case's row (no shape, ``()``, empty or NaN)."""
    value = row.get("output_shape")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.strip().strip("()[]").split(",")]
        value = [int(p) for p in parts if p]
    shape = [int(v) for v in value]
    return shape or None


def _baseline_row(row: dict[str, Any]) -> dict[str, Any]:
    gradient = row.get("gradient")
    out = {k: _clean(row.get(k)) for k in ROW_FIELDS if k not in ("gradient", "time_samples_s", "twin_sessions")}
    out["gradient"] = None if gradient is None else {k: _as_list(v) for k, v in gradient.items()}
    samples = row.get("time_samples_s")
    out["time_samples_s"] = [float(s) for s in samples] if samples else None
    out["twin_sessions"] = row.get("twin_sessions") or None
    shape = output_shape_of(row)
    if shape is not None:
        out["output_shape"] = shape
    if row.get("jacobian"):
        out["jacobian"] = row["jacobian"]
    return out


#: of a fingerprint's stored entries, at most this many are those furthest from the reference (the rest: largest)
WORST_ENTRIES = FINGERPRINT_ENTRIES // 2


def compact_row(row: dict[str, Any], reference: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """A baseline row as a snapshot stores it: a vector-output row's Jacobian blocks beyond
    :func:`diffbench.baseline.stored_in_full` move from ``gradient`` to ``jacobian`` as fingerprints; every other
    row (scalar cases' included) unchanged. With the case's ``reference`` Jacobian (flat lists per input), a
    fingerprint keeps the entries furthest from it (relative to their row's norm), where the method is weakest
    and a change most likely, besides the largest ones."""
    shape = output_shape_of(row)
    if shape is None or not row.get("gradient") or row.get("variant") in results.PRODUCT_VARIANTS:
        return row  # a scalar case's gradient, or a product (a vector as long as an input or the output)
    m = math.prod(shape)
    kept, printed = {}, dict(row.get("jacobian") or {})
    for name, values in row["gradient"].items():
        n, rest = divmod(len(values), m) if m else (0, len(values))
        if rest or stored_in_full(m, n):
            kept[name] = values
            continue
        block = _array(values).reshape(m, n)
        truth = _array((reference or {}).get(name) or [])
        at = None
        if truth.size == block.size:
            at = _worst_and_largest(block, truth.reshape(m, n))
        printed[name] = fingerprint(block, name, at=at)
    return dict(row, gradient=kept, jacobian=printed or None)


def _worst_and_largest(block: np.ndarray, truth: np.ndarray) -> list[int]:
    """Flat indices of the WORST_ENTRIES entries of ``block`` furthest from ``truth`` relative to their row's norm,
    then the largest in magnitude up to FINGERPRINT_ENTRIES in all."""
    scale = row_norms(np.where(np.isfinite(truth), truth, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.abs(block - truth) / np.where(scale > 0, scale, 1.0)[:, None]
    error = np.where(np.isnan(error), np.inf, error).ravel()
    worst = [int(i) for i in np.argsort(-error, kind="stable")[:WORST_ENTRIES] if error[i] > 0]
    flat = block.ravel()
    magnitude = np.where(np.isnan(flat), np.inf, np.abs(flat))
    chosen = list(dict.fromkeys(worst + [int(i) for i in np.argsort(-magnitude, kind="stable")]))
    return sorted(chosen[:FINGERPRINT_ENTRIES])


def measure_isolated(cases: list[Any], config: Any, jobs: int = 2, notify: Callable[[str], None] | None = None
                     ) -> dict[str, list[dict[str, Any]]] | None:
    """Each case's rows (gradients as lists, timing samples, status, diagnosis), measured in worker processes.

    A case that hangs, crashes or exits its worker gets ``timeout``/``error`` rows, as in
    ``run``. Returns None when interrupted (Ctrl-C).
    """
    from .runner import run_isolated

    found: dict[str, list[dict[str, Any]]] = {c.name: [] for c in cases}

    def keep(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            found.setdefault(row["case"], []).append(
                dict(_baseline_row(row), expected=row.get("expected"), diagnosis=row.get("diagnosis")))

    complete = run_isolated(cases, config, jobs, keep, set(), notify=notify)
    return found if complete else None


def _reference_values(case: Any) -> dict[str, Any]:
    """The case's reference gradient, or for a vector-output case its reference Jacobian (output shape + input
    shape per input, from one certified reference row per output component), as arrays."""
    from . import reference as references_module
    from .engines import output_shape

    shape = output_shape(case)
    if not shape:
        return references_module.reference(case).values
    jacobian = getattr(references_module, "reference_jacobian", None)
    if jacobian is None:
        raise ValueError("this diffbench has no reference Jacobian for a vector-output case")
    rows = jacobian(case, "float64").rows
    return {k: np.stack([np.asarray(r.values[k], dtype=np.float64) for r in rows]).reshape(
        tuple(shape) + np.shape(v)) for k, v in case.inputs.items()}


def _reference_worker(todo: list[tuple[Any, ...]], timeout: float, results: Any) -> None:
    loaded: dict[str, dict[str, Any]] = {}
    for file, name in todo:
        try:
            if file not in loaded:
                loaded[file] = {c.name: c for c in load_cases(file)}
            with budget(timeout):
                values = _reference_values(loaded[file][name])
            results.put((name, {k: _as_list(v) for k, v in values.items()}, None))
        except Exception as exc:  # noqa: BLE001 - recorded in the baseline, not fatal
            results.put((name, None, str(exc) or type(exc).__name__))


def _in_workers(target: Callable[..., None], todo: list[tuple[Any, ...]], args: tuple[Any, ...], timeout: float,
                what: str) -> dict[Any, tuple[Any, str | None]]:
    """Run ``target(todo, *args, results)`` in a worker process that reports (ident, value, problem) per item.

    An item is identified by ``todo[i][1:]`` (its case file left out; a single element unwrapped).
    A worker that spends longer than ``timeout`` plus the runner's grace period on one item, or
    dies, is stopped from outside; that item gets (None, "``what`` ran past --timeout"/"died")
    and the rest go on in a fresh worker.
    """
    import multiprocessing as mp
    import queue
    import time

    from .runner import GRACE_S

    def ident(item: tuple[Any, ...]) -> Any:
        return item[1] if len(item) == 2 else tuple(item[1:])

    context = mp.get_context("spawn")
    # --timeout 0 or inf means no limit
    timeout = timeout if timeout and timeout > 0 else math.inf
    found: dict[Any, tuple[Any, str | None]] = {}
    while todo:
        # a fresh queue per worker: one that died mid-write may leave the old queue's lock held
        results = context.Queue()
        process = context.Process(target=target, args=(todo, *args, results), daemon=True)
        process.start()
        try:
            deadline = time.monotonic() + timeout + GRACE_S
            while todo:
                try:
                    key, values, problem = results.get(timeout=0.5)
                except queue.Empty:
                    if process.is_alive() and time.monotonic() < deadline:
                        continue
                    why = "ran past --timeout" if process.is_alive() else f"died (exit code {process.exitcode})"
                    found[ident(todo.pop(0))] = (None, f"{what} {why}")
                    break
                found[key] = (values, problem)
                todo = [t for t in todo if ident(t) != key]
                deadline = time.monotonic() + timeout + GRACE_S
        finally:
            if process.is_alive():
                process.kill()
            process.join(timeout=5)
    return found


def references(cases: list[Any], timeout: float) -> dict[str, tuple[dict[str, list[Any]] | None, str | None]]:
    """Each case's 50-digit reference gradient (as lists) or the reason it has none.

    Computed in a worker process that is stopped from outside when one case takes longer
    than ``timeout`` plus the runner's grace period, or dies; the rest go on in a fresh one.
    """
    todo = [(c.source_file, c.name) for c in cases if c.func is not None and c.source_file and not c.problem]
    return _in_workers(_reference_worker, todo, (timeout,), timeout, "the reference computation")


#: the longest one row's interleaved rounds may take (fewer rounds are taken past it)
PAIRED_BUDGET_S = 20.0


def _paired_worker(todo: list[tuple[Any, ...]], rounds: int, sessions: int, timeout: float, results: Any) -> None:
    from .engines import get_engine
    from .slowdown import paired_rounds, twin_workload

    loaded: dict[str, dict[str, Any]] = {}
    twin = twin_workload()
    prepared: dict[RowKey, Any] = {}
    found: dict[RowKey, list[tuple[list[float], list[float]]]] = {}
    for file, name, method, variant, dtype in todo:
        key = (name, method, variant, dtype)
        try:
            if file not in loaded:
                loaded[file] = {c.name: c for c in load_cases(file)}
            with budget(timeout), np.errstate(all="ignore"):
                prepared[key] = get_engine(method).prepare(loaded[file][name], variant, dtype, "CPU").timed
            found[key] = []
        except Exception as exc:  # noqa: BLE001 - the row cannot be confirmed; the caller says so
            results.put((key, None, f"{type(exc).__name__}: {exc}"))
    # one pass over every row per session, so that a row's sessions lie a pass apart, at different loads
    for session in range(sessions):
        for key in list(prepared):
            try:
                with np.errstate(all="ignore"):
                    found[key].append(paired_rounds(prepared[key], twin, rounds, budget_s=PAIRED_BUDGET_S))
            except Exception as exc:  # noqa: BLE001
                results.put((key, None, f"{type(exc).__name__}: {exc}"))
                del prepared[key]
                continue
            if session == sessions - 1:
                results.put((key, found[key], None))


def paired_ratios(cases: list[Any], keys: list[RowKey], rounds: int = PAIRED_ROUNDS, sessions: int = 1,
                  timeout: float = DEFAULT_TIMEOUT_S) -> dict[RowKey, list[tuple[list[float], list[float]]] | str]:
    """Sessions of each row: its gradient timed alternately with the twin workload, in one worker process.

    Every row is prepared first; then each of ``sessions`` passes times every row for
    ``rounds`` rounds. Returns key -> [(the gradient's per-call samples, the twin's) per session],
    or a sentence saying why the row could not be timed (its preparation raised, ran past
    ``timeout``, or the worker died). One worker: rows timed side by side would load each other.
    """
    files = {c.name: c.source_file for c in cases if c.func is not None and c.source_file and not c.problem}
    todo = [(files[k[0]], *k) for k in keys if k[0] in files]
    # results come after every row is prepared and all but the last pass are done: wait for all of it
    wait = (max(timeout, 0) or DEFAULT_TIMEOUT_S) + PAIRED_BUDGET_S * sessions * max(len(todo), 1)
    found = _in_workers(_paired_worker, todo, (rounds, sessions, timeout), wait, "timing against the twin")
    out: dict[RowKey, list[tuple[list[float], list[float]]] | str] = {}
    for key in keys:
        values, problem = found.get(key, (None, "the case cannot be loaded"))
        out[key] = values if values is not None else (problem or "no timing came back")
    return out


def remeasurer(cases: list[Any], timeout: float) -> Remeasure:
    """The ``remeasure`` of :func:`compare` for ``cases``: :func:`paired_ratios` in a worker process."""
    return lambda keys, rounds: {k: v if isinstance(v, str) else v[0]
                                 for k, v in paired_ratios(cases, keys, rounds, 1, timeout).items()}


def case_entry(case: Any, rows: list[dict[str, Any]],
               reference: tuple[dict[str, list[Any]] | None, str | None] | None = None) -> dict[str, Any]:
    """The baseline entry of one case: hashes, inputs, rows and (for a snapshot) the reference gradient."""
    entry: dict[str, Any] = {
        "definition_hash": case.definition_hash if case.func else "",
        "source_hash": case.source_hash if case.func else "", "file": case.source_file,
        "inputs": {k: {"shape": list(v.shape), "values": _as_list(v)} for k, v in case.inputs.items()},
    }
    if reference is not None:
        entry["reference"] = reference[0]
        if reference[1] is not None:
            entry["reference_problem"] = reference[1]
    entry["rows"] = rows
    return entry


def _case_with_jacobians(case: Any, rows: list[dict[str, Any]],
                         reference: tuple[dict[str, list[Any]] | None, str | None]) -> dict[str, Any]:
    """The baseline entry of a case, its rows' Jacobians compacted (:func:`compact_row`) and, for a vector-output
    case, only the reference blocks small enough to be stored in full kept (the rest is in the fingerprints)."""
    values, problem = reference
    compacted = [compact_row(_baseline_row(r), values) for r in rows]
    shape = next((s for s in map(output_shape_of, compacted) if s), None)
    if values is not None and shape is not None:
        m = math.prod(shape)
        kept = {k: v for k, v in values.items() if m and len(v) % m == 0 and stored_in_full(m, len(v) // m)}
        if len(kept) < len(values):
            problem = (f"the reference Jacobian w.r.t. {', '.join(sorted(set(values) - set(kept)))} is beyond "
                       f"{JACOBIAN_FULL_ENTRIES} entries: not stored (its worst entries are in the fingerprints)")
        values = kept
    return case_entry(case, compacted, (values, problem))


def write_baseline(cases: list[Any], path: Path, methods: list[str] | None = None, dtypes: list[str] | None = None,
                   variants: dict[str, list[str]] | None = None, timing: bool = True, timeout: float = DEFAULT_TIMEOUT_S,
                   profile: str = "quick", jobs: int = 2, memory: int | None = None) -> dict[str, Any] | None:
    """Measure ``cases`` in worker processes and write the baseline JSON to ``path``.

    ``memory`` is each worker's memory budget in bytes (None: the runner's default; 0: none).
    Returns the baseline, or None (and writes nothing) when interrupted.
    Raises KeyError or ValueError for an unknown method, variant or dtype.
    """
    from .report import atomic_write, environment

    load = machine_load()
    config = dataclasses.replace(gate_config(methods, dtypes, variants, timing, timeout, profile), memory_bytes=memory)
    measured = measure_isolated(cases, config, jobs)
    if measured is None:
        return None
    refs = references(cases, timeout)
    if timing:
        timed = [key_of(name, r) for name, rows in measured.items() for r in rows if r.get("time_samples_s")]
        sessions = {k: [{"gradient_s": g, "twin_s": t} for g, t in v] for k, v in
                    paired_ratios(cases, timed, PAIRED_ROUNDS, SESSIONS, timeout).items() if not isinstance(v, str)}
        for name, rows in measured.items():
            for r in rows:
                r["twin_sessions"] = sessions.get(key_of(name, r)) or None

    data = {"schema_version": SCHEMA_VERSION, "environment": dict(environment([], profile),
                                                                  calibration_s=calibration_s() if timing else None,
                                                                  twin=TWIN if timing else None, load=load,
                                                                  load_after=machine_load()),
            "cases": {c.name: _case_with_jacobians(c, measured.get(c.name, []),
                                                   refs.get(c.name, (None, c.problem or "no function")))
                      for c in cases}}
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


# --------------------------------------------------------------------------- comparing
def _array(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _worst(expected: np.ndarray, got: np.ndarray, shape: list[int], count: int = 3) -> list[str]:
    diff = np.abs(np.nan_to_num(got, nan=np.inf) - expected)
    order = np.argsort(-diff)[:count]
    out = []
    for flat_index in order:
        if diff[flat_index] == 0:
            break
        index = np.unravel_index(int(flat_index), shape) if shape else ()
        out.append(f"[{', '.join(map(str, index))}] expected {expected[flat_index]:.10g}, got {got[flat_index]:.10g}")
    return out


def _worst_elements(expected: np.ndarray, got: np.ndarray, delta: np.ndarray, shape: list[int],
                    count: int = 3) -> list[str]:
    order = np.argsort(-delta, kind="stable")[:count]
    out = []
    for flat_index in order:
        if delta[flat_index] == 0:
            break
        index = np.unravel_index(int(flat_index), shape) if shape else ()
        out.append(f"[{', '.join(map(str, index))}] expected {expected[flat_index]:.10g}, got {got[flat_index]:.10g}")
    return out


def _gradient_changes(old: dict[str, Any], row: dict[str, Any], shapes: dict[str, list[int]]) -> list[str]:
    """How the row's gradient moved from the baseline's beyond the method's tolerance, per input."""
    if old.get("gradient") is None or row.get("gradient") is None:
        return []
    tol = tolerance(row["method"], row["variant"], row["dtype"])
    out = []
    for input_name in sorted(set(old["gradient"]) | set(row["gradient"])):
        expected = _array(old["gradient"].get(input_name, []))
        got = _array(row["gradient"].get(input_name, []))
        if expected.shape != got.shape:
            out.append(f"input `{input_name}` changed size {expected.size} -> {got.size}")
            continue
        same = (expected == got) | (np.isnan(expected) & np.isnan(got))
        with np.errstate(invalid="ignore"):
            delta = np.where(same, 0.0, np.abs(got - expected))
        delta = np.where(np.isfinite(delta), delta, np.inf)
        scale = float(np.linalg.norm(np.where(np.isfinite(expected), expected, 0.0)))
        moved = float(np.linalg.norm(delta))
        rel = moved / scale if scale > 0 else moved
        if not rel <= tol:
            worst = "; ".join(_worst_elements(expected, got, delta, shapes.get(input_name, [expected.size])))
            out.append(f"gradient w.r.t. `{input_name}` moved by a relative error of {rel:.3g} (tolerance "
                       f"{tol:.1g}); worst elements {worst}")
    return out


def _index_text(index: tuple[int, ...]) -> str:
    return ", ".join(map(str, index))


def _entry_label(flat_index: int, output_shape: list[int], input_name: str, input_shape: list[int]) -> str:
    """``out[k] / x[i]`` for the flat index k·n + i of a Jacobian block (``x`` alone for a scalar input)."""
    n = math.prod(input_shape)
    k, i = divmod(int(flat_index), n)
    out_index = np.unravel_index(k, output_shape)
    where = f"[{_index_text(np.unravel_index(i, input_shape))}]" if input_shape else ""
    return f"out[{_index_text(out_index)}] / {input_name}{where}"


def _output_shape_change(old: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """The change of a row's output shape from the baseline's, as a one-item list, or [] when it is the same."""
    old_shape, new_shape = output_shape_of(old), output_shape_of(row)
    if old_shape == new_shape:
        return []

    def text(shape: list[int] | None) -> str:
        return "scalar" if shape is None else f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"
    return [f"the output's shape changed {text(old_shape)} -> {text(new_shape)}: the Jacobian cannot be "
            "compared entry by entry"]


def _jacobian_changes(old: dict[str, Any], row: dict[str, Any], shapes: dict[str, list[int]]
                      ) -> tuple[list[str], list[str]]:
    """How a vector-output row's Jacobian moved from the baseline's, and what could not be compared.

    Each output component's row of the Jacobian is judged as a gradient is (its change's norm relative to its
    norm, per input, against the method's tolerance); the text names the changed entries ``out[k] / x[i]``.
    A block the baseline holds as a fingerprint is compared through it (:func:`_fingerprint_changes`). Returns
    (changes, problems): a problem (a fingerprint this diffbench cannot compare, a block the baseline lacks) is
    never a pass either."""
    old_shape = output_shape_of(old)
    moved = _output_shape_change(old, row)
    if moved:
        return moved, []
    if (old.get("gradient") is None and not old.get("jacobian")) or (row.get("gradient") is None
                                                                      and not row.get("jacobian")):
        return [], []  # no Jacobian on one side: the status comparison (and compare's own checks) judge the row
    assert old_shape is not None
    m = math.prod(old_shape)
    tol = tolerance(row["method"], row["variant"], row["dtype"])
    changes: list[str] = []
    problems: list[str] = []
    old_full, old_prints = old.get("gradient") or {}, old.get("jacobian") or {}
    new_full, new_prints = row.get("gradient") or {}, row.get("jacobian") or {}
    for name in sorted(set(old_full) | set(old_prints) | set(new_full) | set(new_prints)):
        input_shape = shapes.get(name)
        if name not in old_full and name not in old_prints:
            problems.append(f"the baseline holds no Jacobian w.r.t. `{name}`; re-run snapshot")
            continue
        if name not in new_full and name not in new_prints:
            changes.append(f"no Jacobian w.r.t. `{name}` came back")
            continue
        if name in old_full and name in new_full:
            expected, got = _array(old_full[name]), _array(new_full[name])
            if (expected.size != got.size or (m and got.size % m)
                    or (input_shape is not None and got.size != m * math.prod(input_shape))):
                changes.append(f"the Jacobian w.r.t. `{name}` changed size {expected.size} -> {got.size}")
                continue
            n = expected.size // m if m else 0
            changes += _block_changes(expected.reshape(m, n), got.reshape(m, n), tol, name, old_shape,
                                      input_shape if input_shape is not None else [n])
            continue
        if name in old_prints:
            old_print = old_prints[name]
        else:
            stored = _array(old_full[name])
            if m == 0 or stored.size % m:
                changes.append(f"the Jacobian w.r.t. `{name}` changed size {stored.size} -> "
                               f"{new_prints[name]['rows'] * new_prints[name]['columns']}")
                continue
            old_print = fingerprint(stored.reshape(m, -1), name, **_settings(new_prints[name]))
        if name in new_full:
            got = _array(new_full[name])
            if got.size != old_print["rows"] * old_print["columns"]:
                changes.append(f"the Jacobian w.r.t. `{name}` changed size {old_print['rows'] * old_print['columns']}"
                               f" -> {got.size}")
                continue
            new_print = fingerprint(got.reshape(m, -1), name, **_settings(old_print))
        else:
            new_print = new_prints[name]
        problem = _incomparable(old_print, new_print)
        if problem:
            problems.append(f"the Jacobian w.r.t. `{name}`: {problem}; re-run snapshot")
            continue
        n = old_print["columns"]
        changes += _fingerprint_changes(old_print, new_print, tol, name, old_shape,
                                        input_shape if input_shape is not None else [n])
    return changes, problems


def _settings(print_: dict[str, Any]) -> dict[str, Any]:
    """The arguments of :func:`diffbench.baseline.fingerprint` that fingerprint a block as ``print_`` was."""
    return {"seed": print_["seed"], "projections": len(print_["projections"]),
            "at": [index for index, _ in print_["entries"]]}


def _incomparable(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    if (old["rows"], old["columns"]) != (new["rows"], new["columns"]):
        return f"its block changed from {old['rows']}×{old['columns']} to {new['rows']}×{new['columns']}"
    if old["seed"] != new["seed"] or len(old["projections"]) != len(new["projections"]):
        return "the fingerprints were taken along different directions"
    if len(old["projections"]) != PROJECTIONS:
        return f"a fingerprint of {len(old['projections'])} projections (this diffbench judges {PROJECTIONS})"
    return None


def _block_changes(expected: np.ndarray, got: np.ndarray, tol: float, name: str, output_shape: list[int],
                   input_shape: list[int]) -> list[str]:
    """The full-Jacobian rule: output component k moved when ‖ΔJ[k, :]‖ / ‖J[k, :]‖ > tol (absolute where its
    norm is 0), exactly as a gradient is compared; the worst entries (relative to their row's norm) named."""
    same = (expected == got) | (np.isnan(expected) & np.isnan(got))
    with np.errstate(invalid="ignore"):
        delta = np.where(same, 0.0, np.abs(got - expected))
    delta = np.where(np.isfinite(delta), delta, np.inf)
    scale = row_norms(np.where(np.isfinite(expected), expected, 0.0))
    moved = row_norms(delta)
    rel = np.where(scale > 0, moved / np.where(scale > 0, scale, 1.0), moved)
    bad = ~(rel <= tol)
    if not bad.any():
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(bad[:, None], delta / np.where(scale > 0, scale, 1.0)[:, None], 0.0).ravel()
    order = [i for i in np.argsort(-weight, kind="stable")[:3] if weight[i] > 0]
    flat_e, flat_g = expected.ravel(), got.ravel()
    worst = "; ".join(f"{_entry_label(i, output_shape, name, input_shape)}: expected {flat_e[i]:.10g}, "
                      f"got {flat_g[i]:.10g}" for i in order)
    k = int(np.argmax(np.where(bad, rel, -1.0)))
    return [f"the Jacobian w.r.t. `{name}` moved in {int(bad.sum())} of {len(bad)} output components beyond the "
            f"tolerance {tol:.1g} (worst: out[{_index_text(np.unravel_index(k, output_shape))}], relative "
            f"{rel[k]:.3g}); worst entries {worst}"]


def _fingerprint_changes(old: dict[str, Any], new: dict[str, Any], tol: float, name: str,
                         output_shape: list[int], input_shape: list[int]) -> list[str]:
    """Output components whose fingerprint moved beyond what the tolerance allows, with the stored entries
    that moved named. Three tests, per output component k (scale: the baseline's ‖J[k, :]‖, 1 where it is 0):

    - the norm moved by more than tol·scale: certain (‖ΔJ[k, :]‖ is at least the norm's change), no false alarm;
    - a stored entry moved by more than tol·scale: certain likewise, and the entry is named;
    - the projections: mean_j (ΔJ[k, :]·v_j)² > PROJECTION_FACTOR·(tol·scale)², a χ²₈ test of
      ‖ΔJ[k, :]‖ > tol·scale (see :data:`PROJECTION_FACTOR` for its false-alarm and miss probabilities).
    A component whose norm or projections are not finite in one of the two and differ is flagged too."""
    old_norms, new_norms = _array(old["norms"]), _array(new["norms"])
    scale = np.where(np.isfinite(old_norms) & (old_norms > 0), old_norms, 1.0)
    both_nan = np.isnan(old_norms) & np.isnan(new_norms)
    with np.errstate(invalid="ignore"):
        norm_moved = ~both_nan & ~(np.abs(new_norms - old_norms) <= tol * scale)
        norm_moved &= ~(old_norms == new_norms)  # the same infinity
        change = np.array([_array(b) - _array(a) for a, b in zip(old["projections"], new["projections"])])
        same = np.array([(_array(a) == _array(b)) | (np.isnan(_array(a)) & np.isnan(_array(b)))
                         for a, b in zip(old["projections"], new["projections"])])
        change = np.where(same, 0.0, change)
        square = np.mean(np.where(np.isfinite(change), change, np.inf) ** 2, axis=0)
        projected = ~(square <= PROJECTION_FACTOR * (tol * scale) ** 2)
    n = old["columns"]
    named, entry_moved = [], np.zeros(len(scale), dtype=bool)
    new_entries = dict((i, v) for i, v in new["entries"])
    for index, value in old["entries"]:
        if index not in new_entries:
            continue
        e, g = _array([value])[0], _array([new_entries[index]])[0]
        if e == g or (math.isnan(e) and math.isnan(g)):
            continue
        k = index // n
        if not abs(g - e) <= tol * scale[k]:
            entry_moved[k] = True
            named.append((abs(g - e) / scale[k] if math.isfinite(abs(g - e)) else math.inf, index, e, g))
    bad = norm_moved | projected | entry_moved
    if not bad.any():
        return []
    components = [f"out[{_index_text(np.unravel_index(k, output_shape))}]" for k in np.flatnonzero(bad)[:6]]
    more = f" and {int(bad.sum()) - 6} more" if bad.sum() > 6 else ""
    text = (f"the Jacobian w.r.t. `{name}` ({old['rows']}×{n}, compared through its fingerprint) moved beyond the "
            f"tolerance {tol:.1g} in output components {', '.join(components)}{more}")
    if named:
        named.sort(key=lambda t: -t[0])
        text += "; worst entries " + "; ".join(f"{_entry_label(i, output_shape, name, input_shape)}: expected "
                                               f"{e:.10g}, got {g:.10g}" for _, i, e, g in named[:3])
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            estimate = np.sqrt(square) / (scale * tol)
        k = int(np.flatnonzero(bad)[0])
        text += (f"; the changed entries are not among the {len(old['entries'])} the baseline keeps (its norms and "
                 f"projections J·v moved: out[{_index_text(np.unravel_index(k, output_shape))}] by about "
                 f"{estimate[k]:.3g}× the tolerance)")
    return [text]


def _label(row: dict[str, Any]) -> str:
    if row["method"] == results.CASE_NOTE:  # the runner's row for a case that could not even be loaded or started
        return "(the whole case)"
    return f"{row['method']}/{row['variant']} {row['dtype']}"


def _labels(rows: Any, limit: int = 6) -> str:
    names = [r if isinstance(r, str) else _label(r) for r in rows]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return (", ".join(names[:limit]) + more) if names else "no rows"


def unmeasured_note(data: dict[str, Any]) -> str | None:
    """One sentence naming the rows of baseline ``data`` that could not be measured, or None when every row was."""
    unmeasured = [f"{name} {_label(r)}" for name, entry in data["cases"].items() for r in entry["rows"]
                  if r["status"] in UNMEASURED_STATUSES]
    if not unmeasured:
        return None
    return (f"{len(unmeasured)} rows could not be measured and are recorded as such: {_labels(unmeasured)}; "
            "check fails on them until they measure (or the case expects it)")


def _number(value: Any) -> str:
    return "-" if value is None else (value if isinstance(value, str) else f"{value:.2g}")


def compare(baseline: dict[str, Any], current: dict[str, dict[str, Any]], slower: SlowerCheck | None = None,
            selected: Callable[[str, str, str], bool] | None = None, calibration: float | None = None,
            remeasure: Remeasure | None = None, load: dict[str, Any] | None = None) -> tuple[int, list[str]]:
    """Compare fresh case entries with a validated baseline; return (exit code, markdown lines).

    The exit code is EXIT_REGRESSION when a gradient or status regressed or a row could not
    be measured, else EXIT_BASELINE when a case is stale or missing or there is nothing to
    compare for something selected, else EXIT_SLOWER for a confirmed slowdown, else
    EXIT_BASELINE when a flagged row could not be told apart from noise, else EXIT_OK.
    ``selected(method, variant, dtype)`` says which baseline rows this check should have measured.

    Slowdowns (``slower``) are found in two steps (:mod:`diffbench.slowdown`): the run's times
    flag candidates (:meth:`SlowerCheck.flag`; ``calibration`` is this check's calibration time,
    for the machine's drift); ``remeasure(keys, rounds)`` then times the flagged rows again, one
    session per call, interleaved with the twin workload, until :meth:`SlowerCheck.verdict`
    decides each; only a row every session confirms fails. Without ``remeasure`` a flagged row
    cannot be confirmed and is reported as undecided. ``load``
    (:func:`diffbench.slowdown.machine_load`) is quoted in the lines.
    """
    regressions: list[str] = []
    uncovered: list[str] = []
    slowdowns: list[str] = []
    noisy: list[str] = []
    timings: list[tuple[RowKey, list[float], list[float], Any]] = []
    compared = timed = 0
    for name, entry in current.items():
        base = baseline["cases"].get(name)
        if base is None:
            uncovered.append(f"- **{name}**: not in the baseline; run `python -m diffbench snapshot` to add it")
            continue
        if base["definition_hash"] != entry["definition_hash"]:
            uncovered.append(f"- **{name}**: the case's function, inputs or expectations changed since the baseline "
                             f"(hash {base['definition_hash']} -> {entry['definition_hash']}); review and re-run "
                             "snapshot")
            continue
        native = (" (its native TensorFlow code changed since the baseline)"
                  if base.get("source_hash") and base["source_hash"] != entry["source_hash"] else "")
        shapes = {k: v["shape"] for k, v in entry["inputs"].items()}
        base_rows = {(r["method"], r["variant"], r["dtype"]): r for r in base["rows"]}
        seen, lacking, untimed, case_compared, unmeasured = set(), [], [], 0, 0
        for row in entry["rows"]:
            key = (row["method"], row["variant"], row["dtype"])
            seen.add(key)
            old = base_rows.get(key)
            # the baseline may hold the same failure, but a row not measured now checks nothing,
            # unless failing is what the case declares (expect=)
            if row["status"] in UNMEASURED_STATUSES and not matches(row["status"], row.get("expected") or Status.OK):
                regressions.append(f"- **{name}** {_label(row)}: could not be measured (`{row['status']}`"
                                   f"{'' if old is None else ', baseline `' + old['status'] + '`'}): "
                                   f"{row.get('diagnosis') or 'no diagnosis'}")
                unmeasured += 1
                continue
            if old is None:
                lacking.append(_label(row))
                continue
            if old["gradient"] is None and old["status"] not in NO_GRADIENT_STATUSES:
                uncovered.append(f"- nothing to compare for **{name}** {_label(row)}: the baseline row (status "
                                 f"`{old['status']}`) has no gradient; re-run snapshot")
                continue
            case_compared += 1
            if output_shape_of(old) is None and output_shape_of(row) is None:
                changes = _gradient_changes(old, row, shapes)
            elif row["variant"] in results.PRODUCT_VARIANTS:
                # a product (J·v, or uᵀ·J per input) is a vector along seeded directions, not a Jacobian block:
                # compared entry by entry as a gradient is
                changes = _output_shape_change(old, row) or _gradient_changes(old, row, shapes)
            else:
                changes, problems = _jacobian_changes(old, row, shapes)
                # fails closed: a Jacobian that cannot be compared is never a pass
                uncovered.extend(f"- nothing to compare for **{name}** {_label(row)}: {p}" for p in problems)
            if old["status"] != row["status"] and row["status"] != Status.OK:
                regressions.append(f"- **{name}** {_label(row)}{native}: status `{old['status']}` -> "
                                   f"`{row['status']}` (relative error against the reference "
                                   f"{_number(old.get('rel_error'))} -> {_number(row.get('rel_error'))})"
                                   + "".join(f"; {c}" for c in changes)
                                   # the per-row diagnosis judges this row alone; where the baseline gives a
                                   # gradient to compare, the comparison says more
                                   + (f"; {row['diagnosis']}" if row.get("diagnosis") and not changes else ""))
            elif changes:
                regressions.extend(f"- **{name}** {_label(row)}{native}: {c}" for c in changes)
            elif old["gradient"] is not None and row.get("gradient") is None:
                regressions.append(f"- **{name}** {_label(row)}: no gradient came back (status `{row['status']}`): "
                                   f"{row.get('diagnosis') or 'no diagnosis'}")
            if slower is not None and row.get("time_samples_s"):
                if not old.get("time_samples_s"):
                    untimed.append(_label(row))
                    continue
                timed += 1
                timings.append((key_of(name, row), old["time_samples_s"], row["time_samples_s"],
                                old.get("twin_sessions")))
        compared += case_compared
        missing = [r for key, r in base_rows.items() if key not in seen and (selected is None or selected(*key))]
        if missing:
            regressions.append(f"- **{name}**: measured in the baseline but not this time: {_labels(missing)}")
        if lacking:
            uncovered.append(f"- nothing to compare for **{name}** {_labels(lacking)}: the baseline has no such rows "
                             f"(it has {_labels(base['rows'])}); check with the --methods, --dtypes and --variants "
                             "of the snapshot, or re-run snapshot")
        elif not case_compared and not missing and not unmeasured:
            uncovered.append(f"- nothing to compare for **{name}**: no row of this check is in the baseline "
                             f"(it has {_labels(base['rows'])})")
        if untimed:
            uncovered.append(f"- nothing to compare for --fail-slower in **{name}** {_labels(untimed)}: the baseline "
                             "has no timing samples; re-run snapshot without --no-timing")
    confirmed = 0
    if slower is not None and timings:
        found_slower, found_noisy, confirmed = _slowdowns(baseline, timings, slower, calibration, remeasure, load)
        slowdowns += found_slower
        noisy += found_noisy
    if slower is not None and not timed and not any("--fail-slower" in line for line in uncovered):
        uncovered.append("- nothing to compare for --fail-slower: no row has timing samples both in the baseline and "
                         "in this check")
    if not current:
        uncovered.append("- nothing to compare for this selection: no case was measured")
    lines: list[str] = []
    for heading, found_lines in (("gradient regressions", regressions),
                                 ("the baseline does not cover this check (nothing to compare)", uncovered),
                                 (f"slowdowns (--fail-slower {slower})", slowdowns),
                                 (f"too noisy to tell (--fail-slower {slower})", noisy)):
        if found_lines:
            lines += [f"## diffbench check: {heading}", "", *found_lines, ""]
    if regressions:
        return EXIT_REGRESSION, lines
    if uncovered:
        return EXIT_BASELINE, lines
    if slowdowns:
        return EXIT_SLOWER, lines
    if noisy:
        return EXIT_BASELINE, lines
    timing_note = ""
    if slower is not None:
        timing_note = (f", {timed} timed; {confirmed} flagged by the run's times and re-measured against the twin "
                       f"workload: within ×{slower.limit:.2f}; {describe_load(load)}")
    return EXIT_OK, [f"diffbench check: {len(current)} cases match the baseline ({compared} rows compared"
                     f"{timing_note})"]


def key_of(name: str, row: dict[str, Any]) -> RowKey:
    """The gate's key of a row of case ``name``."""
    return (name, row["method"], row["variant"], row["dtype"])


def _key_label(key: RowKey) -> str:
    return f"**{key[0]}** {key[1]}/{key[2]} {key[3]}"


def _slowdowns(baseline: dict[str, Any], timings: list[tuple[RowKey, list[float], list[float], Any]],
               slower: SlowerCheck, calibration: float | None, remeasure: Remeasure | None,
               load: dict[str, Any] | None) -> tuple[list[str], list[str], int]:
    """(confirmed slowdown lines, too-noisy lines, rows flagged and found within the limit)."""
    import statistics

    environment = baseline.get("environment") or {}
    drifts = machine_drift([statistics.median(after) / statistics.median(before)
                            for _, before, after, _ in timings if statistics.median(before) > 0],
                           environment.get("calibration_s"), calibration)
    how = "; ".join(f"×{d:.2f} from {text}" for d, text in drifts)
    flagged: dict[RowKey, tuple[str, list[tuple[list[float], list[float]]]]] = {}
    noisy: list[str] = []
    for key, before, after, sessions in timings:
        pairs = [(s["gradient_s"], s["twin_s"]) for s in sessions or [] if s.get("gradient_s")]
        reference = statistics.median(min(g) for g, _ in pairs) if pairs else None
        candidate = slower.flag(before, after, [d for d, _ in drifts], reference)
        if candidate is None:
            continue
        flagged_by = f"flagged by the run: {candidate.reason}; machine drift {how}"
        if environment.get("twin") != TWIN or not pairs:
            noisy.append(f"- {_key_label(key)}: {flagged_by}; the baseline has no sessions timed against the twin "
                         f"workload {TWIN} to confirm it with (made by an older diffbench, or with another twin); "
                         "re-run snapshot")
            continue
        flagged[key] = (flagged_by, pairs)
    if remeasure is None:
        noisy += [f"- {_key_label(key)}: {flagged[key][0]}; not re-measured against the twin, so not confirmed"
                  for key in sorted(flagged)]
        return [], noisy, 0
    slowdowns: list[str] = []
    within = 0
    votes: dict[RowKey, list[Any]] = {key: [] for key in flagged}
    # one pass over the flagged rows per session, each in a fresh worker, until every row has a verdict
    while votes:
        measured = remeasure(sorted(votes), PAIRED_ROUNDS)
        for key in sorted(votes):
            flagged_by, base_sessions = flagged[key]
            found = measured.get(key, "no timing came back")
            if isinstance(found, str):
                noisy.append(f"- {_key_label(key)}: {flagged_by}; could not be re-measured against the twin: {found}")
                del votes[key]
                continue
            votes[key].append(slower.vote(base_sessions, found))
            verdict = slower.verdict(votes[key], len(base_sessions))
            if verdict is None:
                continue
            del votes[key]
            if verdict.outcome == "slower":
                slowdowns.append(f"- {_key_label(key)}: slower than ×{slower.limit:.2f}: {verdict.describe()}; "
                                 f"{flagged_by}")
            elif verdict.outcome == "within":
                within += 1
            else:
                noisy.append(f"- {_key_label(key)}: cannot tell whether it is slower than ×{slower.limit:.2f}: "
                             f"{verdict.describe()}; {flagged_by}; {describe_load(load)}. Re-run check on a quieter "
                             "machine")
    return slowdowns, noisy, within


# --------------------------------------------------------------------------- assert_gradients
def _dtype_of(inputs: dict[str, Any]) -> str:
    for value in inputs.values():
        dtype = getattr(value, "dtype", None)
        name = getattr(dtype, "name", str(dtype)) if dtype is not None else ""
        if "float32" in name:
            return "float32"
    return "float64"


def assert_gradients(fn: Callable[..., Any], inputs: dict[str, Any], *, reference: Callable[..., Any] | None = None,
                     rtol: float | None = None, atol: float | None = None) -> None:
    """Check the tf.GradientTape gradient of a TensorFlow function; raise AssertionError if wrong.

    ``fn`` is plain TensorFlow code called with ``inputs`` as tensors (the keys of ``inputs``
    are its parameter names; passed by position where its signature allows, as ``tf.custom_gradient``
    applies a custom gradient to positional arguments only) and returns a scalar. The gradient is computed in the
    inputs' dtype (float32 if any input is float32, else float64).

    With ``reference`` (an xp function ``reference(*inputs, xp)``, the maths), it is
    judged exactly as ``diffbench run`` judges a tape row: against the certified
    reference at the point as the dtype holds it, every component within
    1000·eps of its own scale (:func:`diffbench.diagnose.judge`). Without it, the truth is
    Richardson-extrapolated differences of ``fn`` in float64, and each component must be
    within 1000·eps of its size plus ten times the differences' own error estimate; a
    float32 gradient is also recomputed in float64 and held to that tighter standard, so a
    wrong custom gradient cannot hide behind float32 rounding. ``rtol``/``atol``, when
    given, replace this with the elementwise test |g − truth| ≤ atol + rtol·|truth|.
    On failure the message names the input, the worst elements with their indices,
    both values, the relative error and the cause, in the same words as ``run``.

    Large inputs: past ``PRODUCT_CHECK_INPUTS`` scalar inputs (without ``reference``) the gradient is
    checked along ``CHECK_DIRECTIONS`` (3) random directions w of random signs instead, each gᵀw against the
    Richardson derivative of ``fn`` along w and its error estimate
    (:func:`diffbench.products.check_directions`): one tape gradient and about 27 calls of ``fn``
    whatever the size. If every component is within 1000·eps of its size, a false alarm has probability at
    most ``FALSE_ALARM`` = 1e-6 (Hoeffding's inequality over the random signs); a single component wrong by
    δ moves every directional derivative by at least |δ|·max(|xᵢ|, 1) and is caught with certainty once that
    exceeds twice the tolerance (10 % of one component among 10⁶ is caught: benchmarks/products.py). The
    message then gives each failing direction's numbers (it cannot name the component).

    Vector outputs: where ``fn`` returns an array of m > 1 elements its Jacobian is checked. Up to
    ``MAX_REFERENCE_OUTPUTS`` outputs and ``PRODUCT_CHECK_INPUTS`` inputs, row by row (each output
    element as a scalar function, by the rules above; ``reference`` then returns the same array), and the
    message names the output element; past that, as the scalar uᵀfn for u of random signs and magnitudes
    uniform in [1, 2] (a wrong entry J[k, i] moves it by at least its whole error, |uₖ| ≥ 1; two rows wrong
    in opposite ways cancel only where their uₖ nearly agree), by the rules above.
    """
    dtype = _dtype_of(inputs)
    arrays = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64) for k, v in inputs.items()}
    _check_finite(arrays)
    shape = _output_shape(fn, arrays, dtype)
    if shape:
        _assert_jacobian(fn, inputs, arrays, shape, reference, rtol, atol)
        return
    names = list(arrays)
    if reference is None and sum(a.size for a in arrays.values()) > PRODUCT_CHECK_INPUTS:
        _assert_along_directions(fn, arrays, dtype, rtol, atol)
        return
    try:
        got = _tape_gradient(fn, arrays, dtype)
    except _NoTapeGradient as error:
        raise AssertionError(f"assert_gradients: {_none_truth(error, fn, arrays, dtype, reference)}") from None
    checks: list[tuple[str, dict[str, np.ndarray], Any, Any]] = []
    if reference is not None:
        from .reference import reference as certified

        ref_case = make_case(reference, arrays, name=getattr(reference, "__name__", "reference"))
        if ref_case.problem:
            raise AssertionError(f"assert_gradients: the reference function cannot be used: {ref_case.problem}")
        checks.append((dtype, got, ref_case, certified(ref_case, dtype)))
        source = "the certified reference"
    else:
        truth, error = _richardson_truth(fn, arrays, dtype)
        checks.append((dtype, got, None, DifferencesTruth(truth, error, dtype)))
        if dtype == "float32":
            with contextlib.suppress(Exception):  # a float32-only function: the float32 check stands alone
                got64 = _tape_gradient(fn, arrays, "float64")
                checks.append(("float64", got64, None, DifferencesTruth(truth, error, "float64")))
        source = "Richardson-extrapolated differences in float64"
    for check_dtype, gradient, ref_case, truth in checks:
        flat = np.concatenate([gradient[k].ravel() for k in names])
        if rtol is not None or atol is not None:
            message = _user_tolerance(flat, truth, rtol, atol, names, arrays)
        else:
            verdict = judge(ref_case, "tape", "eager", check_dtype, flat, truth, native=True,
                            labels=_element_labels(arrays))
            message = None if verdict.status == Status.OK else (
                f"status {verdict.status} in {check_dtype} against {source}: "
                f"{_worst_by_input(flat, truth.flat, names, arrays)}. {verdict.diagnosis}")
        if message:
            point = describe_inputs(arrays)
            raise AssertionError(f"assert_gradients: wrong gradient of {getattr(fn, '__name__', 'fn')} at "
                                 f"{point}:\n  {message}")


#: past this many scalar inputs ``assert_gradients`` checks directional derivatives (the full Richardson truth
#: costs about 16 calls of fn per input: 4.3 s at 200 inputs, 67 s at 2000 measured on the project's CPU)
PRODUCT_CHECK_INPUTS = 128


def _output_shape(fn: Callable[..., Any], arrays: dict[str, np.ndarray], dtype: str) -> tuple[int, ...]:
    """The shape of what ``fn`` returns, ``()`` for one element (or when fn fails here: the gradient's own
    evaluation then says why)."""
    import tensorflow as tf

    try:
        value = _call(fn, {k: tf.constant(v, dtype=dtype) for k, v in arrays.items()})
    except Exception:  # noqa: BLE001 - reported by the gradient's evaluation, with its own message
        return ()
    shape = tuple(int(d) for d in np.shape(value)) if value is not None else ()
    return shape if int(np.prod(shape, dtype=int)) > 1 else ()


def _assert_jacobian(fn: Callable[..., Any], inputs: dict[str, Any], arrays: dict[str, np.ndarray],
                     shape: tuple[int, ...], reference: Callable[..., Any] | None, rtol: float | None,
                     atol: float | None) -> None:
    """assert_gradients for a function returning an array: row by row where small, else uᵀfn."""
    import functools

    import tensorflow as tf

    from .products import MAX_REFERENCE_OUTPUTS, PRODUCT_SEED

    m = int(np.prod(shape, dtype=int))
    name = getattr(fn, "__name__", "fn")
    if m <= MAX_REFERENCE_OUTPUTS and sum(a.size for a in arrays.values()) <= PRODUCT_CHECK_INPUTS:
        for k, index in enumerate(np.ndindex(shape)):
            row = functools.wraps(fn)(lambda *a, _k=k, **kw: tf.reshape(fn(*a, **kw), [-1])[_k])
            truth = None if reference is None else functools.wraps(reference)(
                lambda *a, _k=k, xp, **kw: xp.reshape(reference(*a, xp=xp, **kw), (-1,))[_k])
            try:
                assert_gradients(row, inputs, reference=truth, rtol=rtol, atol=atol)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n  (the Jacobian's row of output element {name}{list(index)}, one of "
                                     f"{m}; shape {shape})") from None
        return
    # random signs times magnitudes uniform in [1, 2] (rounded to float32, so that u is the same number in the
    # function's dtype and in the reference): with signs alone, two output rows whose errors are equal and opposite
    # (a custom gradient that swaps two entries of its upstream gradient) cancel in uᵀJ whenever their signs agree,
    # with probability 1/2; with the magnitudes, only where uₖ and uₗ agree to within the tolerance
    rng = np.random.default_rng((PRODUCT_SEED, m))
    signs = np.where(rng.random(m) < 0.5, -1.0, 1.0) * rng.uniform(1.0, 2.0, m)
    signs = signs.astype(np.float32).astype(np.float64)

    def weighted(*a: Any, **kw: Any) -> Any:
        out = tf.reshape(fn(*a, **kw), [-1])
        return tf.reduce_sum(tf.constant(signs, dtype=out.dtype) * out)

    truth = None if reference is None else functools.wraps(reference)(
        lambda *a, xp, **kw: xp.sum(xp.asarray(signs) * xp.reshape(reference(*a, xp=xp, **kw), (-1,))))
    try:
        assert_gradients(functools.wraps(fn)(weighted), inputs, reference=truth, rtol=rtol, atol=atol)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n  (checked as uᵀ{name} for random signs u times magnitudes in [1, 2]: the "
                             f"Jacobian of its {m} outputs, "
                             f"shape {shape}, is too large to check row by row)") from None


def _assert_along_directions(fn: Callable[..., Any], arrays: dict[str, np.ndarray], dtype: str,
                             rtol: float | None, atol: float | None) -> None:
    """assert_gradients past PRODUCT_CHECK_INPUTS inputs: directional derivatives (products.check_directions)."""
    import tensorflow as tf

    from .products import CHECK_DIRECTIONS, check_directions

    names = list(arrays)
    shapes = [arrays[k].shape for k in names]
    flat = np.concatenate([arrays[k].ravel() for k in names])
    try:
        checks = [(dtype, _tape_gradient(fn, arrays, dtype))]
    except _NoTapeGradient as error:
        raise AssertionError(f"assert_gradients: {_none_text(error, None, '')}") from None
    if dtype == "float32":
        with contextlib.suppress(Exception):  # a float32-only function: the float32 check stands alone
            checks.append(("float64", _tape_gradient(fn, arrays, "float64")))

    from .engines import split

    def line_in(run_dtype: str) -> Callable[[np.ndarray], Callable[[float], float]]:
        point = {k: tf.constant(arrays[k], dtype=run_dtype) for k in names}

        def line(w: np.ndarray) -> Callable[[float], float]:
            # x + t·w in TensorFlow: the point is converted once per direction, not at every step
            step = {k: tf.constant(p, dtype=run_dtype) for k, p in zip(names, split(w, shapes))}
            return lambda t: float(_call(fn, {k: point[k] + t * step[k] for k in names}))
        return line

    line = line_in("float64")
    try:
        line(np.zeros(flat.size))(0.0)
    except Exception:  # noqa: BLE001 - a float32-only function: its derivatives are taken in its own dtype
        line = line_in(dtype)
    for check_dtype, gradient in checks:
        found = check_directions(np.concatenate([gradient[k].ravel() for k in names]), None, flat,
                                 float(np.finfo(check_dtype).eps), rtol=rtol, atol=atol, line=line)
        if not found.passed:
            raise AssertionError(
                f"assert_gradients: wrong gradient of {getattr(fn, '__name__', 'fn')} ({flat.size} inputs, checked "
                f"along {CHECK_DIRECTIONS} random-sign directions w against Richardson derivatives of fn in float64) "
                f"in {check_dtype}: {found.describe()}")


def _none_truth(error: _NoTapeGradient, fn: Callable[..., Any], arrays: dict[str, np.ndarray], dtype: str,
                reference: Callable[..., Any] | None) -> str:
    """The None message with the truth along the missing inputs, from the certified reference when one is given,
    else from Richardson differences of ``fn`` (zero within their own error estimate)."""
    names = list(arrays)
    sizes = np.cumsum([arrays[k].size for k in names])[:-1]
    try:
        if reference is not None:
            from .reference import reference as certified

            flat = certified(make_case(reference, arrays, name="reference"), dtype).flat
            source = "the certified reference's derivatives"
        else:
            value, estimate = _richardson_truth(fn, arrays, dtype)
            flat = np.where(np.abs(value) <= 10 * estimate, 0.0, value)
            source = "Richardson-extrapolated differences in float64"
    except Exception:  # noqa: BLE001 - the truth is then not known, and the text says so
        return _none_text(error, None, "")
    truth = {k: part.reshape(arrays[k].shape) for k, part in zip(names, np.split(np.asarray(flat, float), sizes))}
    return _none_text(error, truth, source)


def _element_labels(arrays: dict[str, np.ndarray]) -> list[str]:
    out = []
    for name, value in arrays.items():
        if value.ndim == 0:
            out.append(name)
        else:
            out.extend(f"{name}[{', '.join(map(str, idx))}]" for idx in np.ndindex(value.shape))
    return out


class _NoTapeGradient(AssertionError):
    """TensorFlow returned None for ``missing``; assert_gradients says what the truth is there."""

    def __init__(self, missing: list[str]):
        super().__init__(f"TensorFlow returned None for the gradient with respect to {', '.join(missing)}")
        self.missing = missing


def _none_text(error: _NoTapeGradient, truth: dict[str, np.ndarray] | None, source: str) -> str:
    """TensorFlow's None with what the truth shows along the missing inputs: 0 only where the truth is 0."""
    head = (f"{error}: the output does not depend on it on the tape (not connected, an integer tensor, or an "
            "operation without a gradient such as argmax or round, or a stop_gradient)")
    if truth is None:
        return f"{head}; the true gradient there could not be computed"
    values = {k: truth[k] for k in error.missing}
    shown = "; ".join(f"{k} = {np.array2string(np.asarray(v), precision=6)}" for k, v in values.items())
    if not any(np.any(v) for v in values.values()):
        return (f"{head}; {source} give 0 there ({shown}), so unconnected_gradients=tf.UnconnectedGradients.ZERO "
                "gives the right answer if 0 is meant")
    return (f"{head}; {source} give {shown}, not 0, so unconnected_gradients=tf.UnconnectedGradients.ZERO would "
            "give a wrong gradient: connect the output to the input on the tape")


def _check_finite(arrays: dict[str, np.ndarray]) -> None:
    """AssertionError naming the first input holding a NaN or an infinity (no gradient is defined there)."""
    for name, value in arrays.items():
        bad = np.argwhere(~np.isfinite(value))
        if len(bad):
            index = tuple(int(i) for i in bad[0])
            where = f" at index {index}" if index else ""
            raise AssertionError(f"assert_gradients: input {name!r} contains {value[tuple(bad[0])]}{where}; a gradient "
                                 "is only defined at a finite point, choose finite values")


def _call(fn: Callable[..., Any], tensors: dict[str, Any]) -> Any:
    """``fn(**tensors)``, with every parameter that can be passed by position passed by position: a
    ``tf.custom_gradient`` function applies its gradient only to positional arguments (TensorFlow differentiates
    its primal code for keyword ones), so a keyword call would hide a wrong custom gradient."""
    try:
        bound = inspect.signature(fn).bind(**tensors)
    except (TypeError, ValueError):  # no signature to read, or names it does not take: fn says why when called
        return fn(**tensors)
    return fn(*bound.args, **bound.kwargs)


def _tape_gradient(fn: Callable[..., Any], arrays: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The tape's gradient of ``fn`` in ``dtype``; AssertionError for a non-scalar or a None gradient."""
    import tensorflow as tf

    names = list(arrays)
    variables = {k: tf.Variable(v, dtype=dtype) for k, v in arrays.items()}
    with tf.GradientTape() as tape:
        value = _call(fn, variables)
    if value is None:
        raise AssertionError(f"assert_gradients: {getattr(fn, '__name__', 'fn')} returned None; it must return a "
                             "scalar (a missing `return`?)")
    if int(np.prod(np.shape(value))) != 1:
        raise AssertionError(f"assert_gradients: fn returned shape {tuple(np.shape(value))}; it must return a scalar")
    grads = tape.gradient(value, [variables[k] for k in names])
    missing = [k for k, g in zip(names, grads) if g is None]
    if missing:
        raise _NoTapeGradient(missing)
    return {k: np.asarray(g.numpy(), dtype=np.float64).reshape(arrays[k].shape) for k, g in zip(names, grads)}


def _richardson_truth(fn: Callable[..., Any], arrays: dict[str, np.ndarray], dtype: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Richardson differences of ``fn`` in float64 (in ``dtype`` if fn only runs there) and their error estimate."""
    import tensorflow as tf

    from .engines import finite

    names = list(arrays)
    sizes = [arrays[k].size for k in names]
    flat = np.concatenate([arrays[k].ravel() for k in names])

    def f_in(run_dtype: str) -> Callable[[np.ndarray], float]:
        def f(vector: np.ndarray) -> float:
            parts = np.split(vector, np.cumsum(sizes)[:-1])
            return float(_call(fn, {k: tf.constant(p.reshape(arrays[k].shape), dtype=run_dtype)
                               for k, p in zip(names, parts)}))
        return f

    try:
        result = finite.differentiate(f_in("float64"), flat, "richardson")
    except Exception:  # noqa: BLE001 - a float32-only function: difference it in its own dtype
        result = finite.differentiate(f_in(dtype), flat.astype(dtype), "richardson")
    return np.asarray(result.value, dtype=np.float64), np.abs(np.asarray(result.error, dtype=np.float64))


def _worst_by_input(flat: np.ndarray, truth: np.ndarray, names: list[str], arrays: dict[str, np.ndarray]) -> str:
    parts, start = [], 0
    for k in names:
        size = arrays[k].size
        expected, actual = truth[start:start + size], flat[start:start + size]
        start += size
        if np.array_equal(expected, actual):
            continue
        norm = float(np.linalg.norm(expected))
        diff = float(np.linalg.norm(np.nan_to_num(actual, nan=np.inf) - expected))
        rel = diff / norm if norm > 0 else diff
        parts.append(f"gradient with respect to {k!r}: relative error {rel:.3g}; worst elements "
                     f"{'; '.join(_worst(expected, actual, list(arrays[k].shape)))}")
    return "; ".join(parts) or "no element differs"


def _user_tolerance(flat: np.ndarray, truth: Any, rtol: float | None, atol: float | None, names: list[str],
                    arrays: dict[str, np.ndarray]) -> str | None:
    expected = truth.flat
    rtol = 0.0 if rtol is None else rtol
    atol = 0.0 if atol is None else atol
    bad = ~(np.abs(flat - expected) <= atol + rtol * np.abs(expected))
    if not bad.any():
        return None
    return f"{_worst_by_input(flat, expected, names, arrays)} (rtol {rtol:g}, atol {atol:g})"
