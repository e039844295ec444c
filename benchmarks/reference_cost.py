"""Cost of the certified reference: ball arithmetic (arb) against the mpmath tape it replaced, in one run.

    python benchmarks/reference_cost.py [--markdown] [--baseline REV] [--no-baseline] [--big N]

Each reference is computed once, cold (no cache), by today's tape (python-flint's arb
balls, ``diffbench.reference``) and by the mpmath tape of git revision ``REV`` (default
``main``; its ``mptape.py`` and ``reference.py`` are loaded from ``git show`` into a
temporary package), on the same machine in the same process, so the ratios hold under
whatever load the machine has (printed: ``os.getloadavg``). Each gradient is checked
against a closed form: (A + Aᵀ)x/2 for the quadratic form, SciPy's ``rosen_der`` for
Rosenbrock, SciPy's ``rosen_hess`` for the Rosenbrock Hessian.

Workloads: the 500×500 quadratic form; Rosenbrock with 10⁴ inputs; the reference Hessian
of Rosenbrock with 100 inputs and of the 21-weight tanh network in cases/ml.py; and the
gradient of Rosenbrock with ``--big`` inputs (default 10⁶; arb only, the mpmath tape
would take hours).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _quadratic(n: int) -> tuple[Any, np.ndarray]:
    from diffbench import case

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((n, n))

    def quadratic_form(x, xp):
        return 0.5 * x @ (xp.asarray(matrix) @ x)

    point = rng.standard_normal(n)
    return case(inputs={"x": point}, name=f"quadratic_form_{n}")(quadratic_form), 0.5 * (matrix + matrix.T) @ point


def _rosenbrock(n: int) -> tuple[Any, np.ndarray]:
    from scipy.optimize import rosen_der

    from diffbench import case

    def rosenbrock(x, xp):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    point = np.random.default_rng(1).uniform(-2, 2, n)
    return case(inputs={"x": point}, name=f"rosenbrock_{n}")(rosenbrock), rosen_der(point)


def _mlp() -> Any:
    from diffbench import load_cases

    return next(c for c in load_cases(ROOT / "cases" / "ml.py") if c.name == "mlp_tanh")


def _baseline_module(rev: str) -> Any:
    """The reference module of git revision ``rev`` (mpmath tape), importable beside today's."""
    folder = Path(tempfile.mkdtemp(prefix="diffbench_baseline_"))
    package = folder / "diffbench_baseline_reference"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("mptape", "reference"):
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:diffbench/{name}.py"], check=True,
                                capture_output=True, text=True).stdout
        # its own tape, everything else from today's package
        source = source.replace("from . import mptape", "from diffbench_baseline_reference import mptape")
        source = source.replace("from .", "from diffbench.")
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    return importlib.import_module("diffbench_baseline_reference.reference")


def _timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (for RESULTS.md)")
    parser.add_argument("--baseline", default="main", help="git revision whose mpmath tape is the baseline")
    parser.add_argument("--no-baseline", action="store_true", help="time the arb reference only")
    parser.add_argument("--big", type=int, default=1_000_000, help="inputs of the large Rosenbrock (0: skip)")
    args = parser.parse_args()
    import mpmath
    from scipy.optimize import rosen_hess

    from diffbench import reference as arb_reference

    old = None if args.no_baseline else _baseline_module(args.baseline)
    load = os.getloadavg()
    rows = []

    def gradient(label: str, make: Any, baseline: bool = True) -> None:
        one, closed_form = make()
        seconds, ref = _timed(lambda: arb_reference.reference(one))
        agreement = _relative(ref.values["x"], closed_form)
        old_seconds = float("nan")
        if baseline and old is not None:
            again, _ = make()
            old_seconds, _ = _timed(lambda: old.reference(again))
        rows.append((label, one.size, old_seconds, seconds, ref.label, ref.worst_radius, agreement))

    gradient("quadratic form 500×500", lambda: _quadratic(500))
    gradient("Rosenbrock n = 10⁴", lambda: _rosenbrock(10_000))

    def hessian(label: str, make: Any, truth: Any) -> None:
        one = make()
        seconds, h = _timed(lambda: arb_reference.reference_hessian(one))
        old_seconds = float("nan")
        if old is not None:
            old_seconds, _ = _timed(lambda: old.reference_hessian(make()))
        agreement = _relative(h, truth(one)) if truth is not None else float("nan")
        rows.append((label, one.size, old_seconds, seconds, "Hessian", None, agreement))

    hessian("Rosenbrock Hessian, n = 100", lambda: _rosenbrock(100)[0],
            lambda one: rosen_hess(np.asarray(one.inputs["x"], dtype=float)))
    hessian("tanh network Hessian (cases/ml.py mlp_tanh)", _mlp, None)
    if args.big:
        gradient(f"Rosenbrock n = {args.big:.0e}", lambda: _rosenbrock(args.big), baseline=False)

    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    after = os.getloadavg()
    header = (f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the start, "
              f"{after[0]:.1f} / {after[1]:.1f} / {after[2]:.1f} at the end, on {os.cpu_count()} cores; "
              f"mpmath backend {mpmath.libmp.BACKEND}; baseline tape from {args.baseline}; peak memory {peak:.0f} MB")
    if args.markdown:
        print(header, end="\n\n")
        print("| workload | inputs | mpmath tape (s) | arb (s) | speed-up | arb label | worst radius "
              "| max relative difference to the closed form |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for label, n, before, after, name, radius, agreement in rows:
            ratio = f"{before / after:.0f}×" if before == before else "–"
            print(f"| {label} | {n} | {before:.1f} | {after:.2f} | {ratio} | {name} | "
                  f"{'–' if radius is None else f'{radius:.1e}'} | {agreement:.1e} |")
    else:
        print(header)
        for label, n, before, after, name, radius, agreement in rows:
            print(f"{label}: {n} inputs, mpmath tape {before:.1f} s, arb {after:.2f} s ({name}, worst radius "
                  f"{radius}), closed form within {agreement:.1e}")


if __name__ == "__main__":
    main()
