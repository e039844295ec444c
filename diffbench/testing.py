"""Regression tests on gradients: baselines and the CI gate, and ``assert_gradients``.

Baseline format (JSON, one file, readable and diffable by eye). ``SCHEMA_VERSION``
history:

- 1: cases -> {source_hash, file, inputs, reference, rows: [{method, variant, dtype,
  status, rel_error, time_median_s, gradient}]}, plus environment and created.

Reading a baseline only parses JSON; it never executes code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

SCHEMA_VERSION = 1
DEFAULT_BASELINE = Path(".diffbench") / "baseline.json"
EXIT_OK, EXIT_REGRESSION, EXIT_BASELINE = 0, 1, 2


class BaselineError(Exception):
    """The baseline cannot be used (missing, unreadable, unknown schema, stale)."""


# --------------------------------------------------------------------------- measuring
def _gradient_rows(case: Any, methods: list[str] | None, dtypes: list[str] | None,
                   variants: dict[str, list[str]] | None, timing: bool, timeout: float) -> list[dict[str, Any]]:
    """Rows for one case with the gradient itself attached (order 1, CPU), measured in process."""
    from .harness import make_config, measure_case

    config = make_config(methods, dtypes, variants, "quick", False, timeout, timing)
    config.devices = ("CPU",)
    rows: list[dict[str, Any]] = []
    measure_case(case, config, rows.append, keep_gradients=True)
    return rows


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


def snapshot_case(case: Any, methods: list[str] | None = None, dtypes: list[str] | None = None,
                  variants: dict[str, list[str]] | None = None, timing: bool = True,
                  timeout: float = 120.0) -> dict[str, Any]:
    """The baseline entry of one case: inputs, reference, and every method's gradient and error."""
    from .reference import reference

    entry: dict[str, Any] = {"source_hash": case.source_hash if case.func else "", "file": case.source_file,
                             "inputs": {k: {"shape": list(v.shape), "values": _as_list(v)} for k, v in case.inputs.items()}}
    try:
        ref = reference(case)
        entry["reference"] = {k: _as_list(v) for k, v in ref.values.items()}
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        entry["reference"] = None
        entry["reference_problem"] = str(exc)
    rows = []
    for row in _gradient_rows(case, methods, dtypes, variants, timing, timeout):
        gradient = row.get("gradient")
        rows.append({"method": row["method"], "variant": row["variant"], "dtype": row["dtype"],
                     "status": row["status"], "rel_error": _clean(row["rel_error"]),
                     "time_median_s": _clean(row["time_median_s"]),
                     "gradient": None if gradient is None else {k: _as_list(v) for k, v in gradient.items()}})
    entry["rows"] = rows
    return entry


def write_baseline(cases: list[Any], path: Path, **options: Any) -> dict[str, Any]:
    """Measure ``cases`` and write the baseline JSON to ``path``; return it."""
    from .report import atomic_write, environment

    data = {"schema_version": SCHEMA_VERSION, "environment": environment([], "quick"),
            "cases": {c.name: snapshot_case(c, **options) for c in cases}}
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def read_baseline(path: Path) -> dict[str, Any]:
    """Parse a baseline (JSON only, no code); raises BaselineError with what to do."""
    if not path.exists():
        raise BaselineError(f"no baseline at {path}; create one with: python -m diffbench snapshot --baseline {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"the baseline {path} is unreadable ({exc}); re-create it with diffbench snapshot") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise BaselineError(f"{path} is not a diffbench baseline (no schema_version)")
    if data["schema_version"] != SCHEMA_VERSION:
        raise BaselineError(f"{path} has schema_version {data['schema_version']!r}; this diffbench reads version "
                            f"{SCHEMA_VERSION}. Re-create it with this version's diffbench snapshot")
    if not isinstance(data.get("cases"), dict):
        raise BaselineError(f"{path} has no 'cases' mapping")
    return data


# --------------------------------------------------------------------------- comparing
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


def _parse_slower(spec: str | None) -> tuple[str, float] | None:
    if not spec:
        return None
    match = re.fullmatch(r"(median|min):(\d+(?:\.\d+)?)%", spec.strip())
    if not match:
        raise SystemExit(f"diffbench: --fail-slower takes STAT:PERCENT, e.g. median:20%, got {spec!r}")
    return match.group(1), float(match.group(2)) / 100


def compare(baseline: dict[str, Any], current: dict[str, dict[str, Any]], slower: tuple[str, float] | None = None
            ) -> tuple[int, list[str]]:
    """Compare fresh entries with the baseline; return (exit code, markdown lines of findings)."""
    from .metrics import tolerance

    problems: list[str] = []
    stale: list[str] = []
    for name, entry in current.items():
        base = baseline["cases"].get(name)
        if base is None:
            stale.append(f"- **{name}**: not in the baseline; run `python -m diffbench snapshot` to add it")
            continue
        if base.get("source_hash") != entry["source_hash"]:
            stale.append(f"- **{name}**: the case's source or inputs changed since the baseline (hash "
                         f"{base.get('source_hash')} -> {entry['source_hash']}); review and re-run snapshot")
            continue
        base_rows = {(r["method"], r["variant"], r["dtype"]): r for r in base.get("rows", [])}
        for row in entry["rows"]:
            key = (row["method"], row["variant"], row["dtype"])
            label = f"{row['method']}/{row['variant']} {row['dtype']}"
            old = base_rows.get(key)
            if old is None:
                continue
            if old["status"] != row["status"] and row["status"] != "ok":
                problems.append(f"- **{name}** {label}: status `{old['status']}` -> `{row['status']}`")
                continue
            if old.get("gradient") and row.get("gradient"):
                tol = tolerance(row["method"], row["variant"], row["dtype"])
                for input_name, values in row["gradient"].items():
                    expected = np.array([np.nan if v is None else float(v) for v in old["gradient"].get(input_name, [])])
                    got = np.array([np.nan if v is None else float(v) for v in values])
                    if expected.shape != got.shape:
                        problems.append(f"- **{name}** {label}: input `{input_name}` changed size "
                                        f"{expected.size} -> {got.size}")
                        continue
                    both_nan = np.isnan(expected) & np.isnan(got)
                    norm = float(np.linalg.norm(np.where(both_nan, 0, expected)))
                    diff = float(np.linalg.norm(np.where(both_nan, 0, np.nan_to_num(got, nan=np.inf) - expected)))
                    rel = diff / norm if norm > 0 else diff
                    if not rel <= tol:
                        shape = entry["inputs"][input_name]["shape"]
                        worst = "; ".join(_worst(expected, got, shape))
                        problems.append(f"- **{name}** {label}: gradient w.r.t. `{input_name}` moved by a relative "
                                        f"{rel:.3g} (tolerance {tol:.1g}); worst elements {worst}")
            if slower and old.get("time_median_s") and row.get("time_median_s"):
                ratio = row["time_median_s"] / old["time_median_s"]
                if ratio > 1 + slower[1]:
                    problems.append(f"- **{name}** {label}: {slower[0]} time {old['time_median_s']:.3g} s -> "
                                    f"{row['time_median_s']:.3g} s ({(ratio - 1) * 100:.0f}% slower, limit "
                                    f"{slower[1] * 100:.0f}%)")
    if stale:
        return EXIT_BASELINE, ["## diffbench check: the baseline does not cover these cases", "", *stale]
    if problems:
        return EXIT_REGRESSION, ["## diffbench check: gradient regressions", "", *problems]
    return EXIT_OK, [f"diffbench check: {len(current)} cases match the baseline"]


# --------------------------------------------------------------------------- commands
def _cases(args: argparse.Namespace) -> list[Any]:
    from .cli import _load

    return _load(args)


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Write a baseline for the selected cases."""
    from .cli import _split, _variants

    path = Path(args.baseline)
    cases = _cases(args)
    write_baseline(cases, path, methods=_split(args.methods), dtypes=_split(args.dtypes),
                   variants=_variants(args.variants), timing=not args.no_timing, timeout=args.timeout)
    print(f"diffbench: baseline for {len(cases)} cases written to {path}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Recompute and compare with the baseline; exit 0 (match), 1 (regression) or 2 (baseline unusable)."""
    from .cli import _split, _variants

    path = Path(args.baseline)
    try:
        baseline = read_baseline(path)
    except BaselineError as exc:
        print(f"diffbench check: {exc}", file=sys.stderr)
        return EXIT_BASELINE
    slower = _parse_slower(args.fail_slower)
    cases = _cases(args)
    current = {c.name: snapshot_case(c, methods=_split(args.methods), dtypes=_split(args.dtypes),
                                     variants=_variants(args.variants), timing=slower is not None,
                                     timeout=args.timeout) for c in cases}
    code, lines = compare(baseline, current, slower)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.summary:
        Path(args.summary).write_text(text, encoding="utf-8")
    return code


def add_commands(sub: Any, add_case_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``snapshot`` and ``check`` on the CLI."""
    for name, func, text in (("snapshot", cmd_snapshot, "write a baseline of every case's gradients"),
                             ("check", cmd_check, "compare gradients with the baseline (exit 0 ok, 1 regression, "
                                                  "2 baseline missing/stale)")):
        parser = sub.add_parser(name, help=text)
        add_case_options(parser)
        parser.add_argument("--baseline", default=str(DEFAULT_BASELINE), metavar="FILE",
                            help=f"baseline file (default {DEFAULT_BASELINE}, relative to the current folder)")
        parser.add_argument("--methods", metavar="M1,M2", help="methods (default symbolic,tape,finite)")
        parser.add_argument("--dtypes", metavar="D1,D2", help="float32 and/or float64 (default both)")
        parser.add_argument("--variants", metavar="METHOD=V1,V2", action="append", help="only these variants")
        parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                            help="time budget per measurement (default 120)")
        if name == "snapshot":
            parser.add_argument("--no-timing", action="store_true", help="do not record times (no --fail-slower)")
        else:
            parser.add_argument("--fail-slower", metavar="STAT:PERCENT",
                                help="also fail when a row got slower, e.g. median:20%% (needs a timed baseline)")
            parser.add_argument("--summary", metavar="FILE", help="also write the markdown summary to FILE")
        parser.set_defaults(func=func)


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

    ``fn`` is plain TensorFlow code called as ``fn(**tensors)`` (the keys of ``inputs``
    are its parameter names) and returns a scalar. The gradient is computed in the
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
    """
    from .case import make_case
    from .diagnose import judge
    from .metrics import describe_inputs

    dtype = _dtype_of(inputs)
    arrays = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64) for k, v in inputs.items()}
    names = list(arrays)
    got = _tape_gradient(fn, arrays, dtype)
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
        checks.append((dtype, got, None, _DifferencesTruth(truth, error, dtype)))
        if dtype == "float32":
            with contextlib.suppress(Exception):  # a float32-only function: the float32 check stands alone
                got64 = _tape_gradient(fn, arrays, "float64")
                checks.append(("float64", got64, None, _DifferencesTruth(truth, error, "float64")))
        source = "Richardson-extrapolated differences in float64"
    for check_dtype, gradient, ref_case, truth in checks:
        flat = np.concatenate([gradient[k].ravel() for k in names])
        if rtol is not None or atol is not None:
            message = _user_tolerance(flat, truth, rtol, atol, names, arrays)
        else:
            verdict = judge(ref_case, "tape", "eager", check_dtype, flat, truth, native=True,
                            labels=_labels(arrays))
            message = None if verdict.status == "ok" else (
                f"status {verdict.status} in {check_dtype} against {source}: "
                f"{_worst_by_input(flat, truth.flat, names, arrays)}. {verdict.diagnosis}")
        if message:
            point = describe_inputs(arrays)
            raise AssertionError(f"assert_gradients: wrong gradient of {getattr(fn, '__name__', 'fn')} at "
                                 f"{point}:\n  {message}")


def _labels(arrays: dict[str, np.ndarray]) -> list[str]:
    out = []
    for name, value in arrays.items():
        if value.ndim == 0:
            out.append(name)
        else:
            out.extend(f"{name}[{', '.join(map(str, idx))}]" for idx in np.ndindex(value.shape))
    return out


def _tape_gradient(fn: Callable[..., Any], arrays: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The tape's gradient of ``fn`` in ``dtype``; AssertionError for a non-scalar or a None gradient."""
    import tensorflow as tf

    names = list(arrays)
    variables = {k: tf.Variable(v, dtype=dtype) for k, v in arrays.items()}
    with tf.GradientTape() as tape:
        value = fn(**variables)
    if int(np.prod(np.shape(value))) != 1:
        raise AssertionError(f"assert_gradients: fn returned shape {tuple(np.shape(value))}; it must return a scalar")
    grads = tape.gradient(value, [variables[k] for k in names])
    missing = [k for k, g in zip(names, grads) if g is None]
    if missing:
        raise AssertionError(f"TensorFlow returned None for the gradient with respect to {', '.join(missing)}: the "
                             "output does not depend on it on the tape (not connected, an integer tensor, or an "
                             "operation without a gradient such as argmax or round). Pass "
                             "unconnected_gradients=tf.UnconnectedGradients.ZERO if 0 is meant")
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
            return float(fn(**{k: tf.constant(p.reshape(arrays[k].shape), dtype=run_dtype)
                               for k, p in zip(names, parts)}))
        return f

    try:
        result = finite.differentiate(f_in("float64"), flat, "richardson")
    except Exception:  # noqa: BLE001 - a float32-only function: difference it in its own dtype
        result = finite.differentiate(f_in(dtype), flat.astype(dtype), "richardson")
    return np.asarray(result.value, dtype=np.float64), np.abs(np.asarray(result.error, dtype=np.float64))


class _DifferencesTruth:
    """A reference made of finite differences: no cancellation scale is known, so each component is
    judged at its own size, widened by ten times the differences' error estimate."""

    undefined = None
    order2_undefined = None
    uncertain = None
    kinks: list[Any] = []
    tape = None
    ops: set[str] = set()
    magnitude = float("nan")

    def __init__(self, values: np.ndarray, error: np.ndarray, dtype: str) -> None:
        eps = float(np.finfo(dtype).eps)
        self.values = {"flat": values}
        self.flat = values
        self.scale = np.maximum(np.abs(values), 10 * error / (1e3 * eps))
        self.certified = np.ones(values.size, dtype=bool)
        self.rounding = np.zeros(values.size)


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
