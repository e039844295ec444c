"""Regression tests on gradients: baselines and the CI gate, and ``assert_gradients``.

Baseline format (JSON, one file, readable and diffable by eye). ``SCHEMA_VERSION``
history:

- 1: cases -> {source_hash, file, inputs, reference, rows: [{method, variant, dtype,
  status, rel_error, time_median_s, gradient}]}, plus environment and created.

Reading a baseline only parses JSON; it never executes code.
"""

from __future__ import annotations

import argparse
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
    inputs' dtype (float32 if any input is float32, else float64) and compared with
    Richardson-extrapolated central differences of ``fn`` in float64, or, when
    ``reference`` is given (an xp function ``reference(*inputs, xp)``), with its
    50-digit symbolic gradient. Elementwise test: |g − truth| ≤ atol + rtol·|truth|,
    with defaults rtol = 1e-5 (float64) / 1e-3 (float32) against finite differences,
    1e-10 / 1e-4 against a symbolic reference, and atol = rtol·max|truth|.
    On failure the message names the input, the worst elements with their indices,
    both values, the relative error and the likely cause.
    """
    import tensorflow as tf

    from .case import make_case
    from .engines import finite
    from .metrics import describe_inputs

    dtype = _dtype_of(inputs)
    arrays = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64) for k, v in inputs.items()}
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
    got = {k: np.asarray(g.numpy(), dtype=np.float64).reshape(arrays[k].shape) for k, g in zip(names, grads)}
    if reference is not None:
        from .reference import reference as reference_gradient

        ref_case = make_case(reference, arrays, name=getattr(reference, "__name__", "reference"))
        if ref_case.problem:
            raise AssertionError(f"assert_gradients: the reference function cannot be used: {ref_case.problem}")
        truth = reference_gradient(ref_case).values
        source = "the 50-digit symbolic gradient of the reference"
        default_rtol = 1e-10 if dtype == "float64" else 1e-4
    else:
        flat = np.concatenate([arrays[k].ravel() for k in names])
        shapes = [(k, arrays[k].shape, arrays[k].size) for k in names]

        def f(vector: np.ndarray) -> float:
            parts, start = {}, 0
            for k, shape, size in shapes:
                parts[k] = tf.constant(vector[start:start + size].reshape(shape), dtype=tf.float64)
                start += size
            return float(fn(**parts))

        try:
            fd, _ = finite.derivative(f, flat, "richardson", finite.step_scale("richardson", "float64"))
        except Exception:  # noqa: BLE001 - a float32-only function: difference it in its own dtype
            fd, _ = finite.derivative(lambda v: float(fn(**{k: tf.constant(p, dtype=dtype) for k, p in
                                                            zip(names, np.split(v, np.cumsum([s for _, _, s in shapes])[:-1]))})),
                                      flat.astype(dtype), "richardson", finite.step_scale("richardson", dtype))
        truth, start = {}, 0
        for k, shape, size in shapes:
            truth[k] = np.asarray(fd[start:start + size], dtype=np.float64).reshape(shape)
            start += size
        source = "Richardson-extrapolated central differences in float64"
        default_rtol = 1e-5 if dtype == "float64" else 1e-3
    rtol = default_rtol if rtol is None else rtol
    failures = []
    for k in names:
        expected, actual = truth[k].ravel(), got[k].ravel()
        scale = float(np.max(np.abs(expected))) if expected.size else 0.0
        tol_abs = (rtol * scale if atol is None else atol)
        bad = ~(np.abs(actual - expected) <= tol_abs + rtol * np.abs(expected))
        if not bad.any():
            continue
        norm = float(np.linalg.norm(expected))
        rel = float(np.linalg.norm(actual - expected)) / norm if norm > 0 else float(np.linalg.norm(actual - expected))
        worst = "; ".join(_worst(expected, actual, list(arrays[k].shape)))
        if not np.all(np.isfinite(actual)):
            cause = ("the tape produced NaN/inf while the function is finite: an intermediate overflowed in the backward "
                     "pass; use a numerically stable formulation")
        elif rel > 1e-2:
            cause = ("the tape's gradient disagrees with the function's own values by far more than rounding can "
                     "explain: a tf.custom_gradient or hand-written gradient is likely wrong")
        else:
            cause = f"a small disagreement: rounding in {dtype}, or a tolerance too tight for this function"
        failures.append(f"gradient with respect to {k!r}: relative error {rel:.3g} (rtol {rtol:g}) against {source}; "
                        f"worst elements {worst}. Likely cause: {cause}")
    if failures:
        point = describe_inputs(arrays)
        raise AssertionError(f"assert_gradients: wrong gradient of {getattr(fn, '__name__', 'fn')} at {point}:\n  " +
                             "\n  ".join(failures))
