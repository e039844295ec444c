"""Finite differences evaluated one NumPy call per point against one ``jax.vmap`` call per round.

For Rosenbrock at n = 10 and 100 (float64), times the ``central`` and ``richardson`` gradients and the
Hessian both ways in one run: the first call (the batched one compiles for its batch sizes) and the
median of repeated calls; with the calls of f, the batched rounds (each one call, or several of at most
``MAX_BATCH`` points), the relative error against SciPy's
``rosen_der``/``rosen_hess``, and how far batched f values are from NumPy's in units in the last place
(over every point of the Richardson gradient's stencils). Speed-ups are ratios within this run.

    python benchmarks/fd_batched.py [--markdown] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy.optimize import rosen_der, rosen_hess

from diffbench import case
from diffbench.engines import finite


def rosenbrock_case(n: int) -> Any:
    @case(inputs={"x": list(np.linspace(-1.2, 1.5, n))}, name=f"rosenbrock_{n}")
    def rosenbrock(x: Any, xp: Any) -> Any:
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    return rosenbrock


def _time(run: Callable[[], finite.FiniteResult], repeats: int) -> tuple[float, float, finite.FiniteResult]:
    start = time.perf_counter()
    result = run()
    first = time.perf_counter() - start
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return first, statistics.median(samples), result


def _ulps(case_: Any, x: np.ndarray, batch: finite.BatchedFunction) -> float:
    """The largest distance, in ulps, between batched and NumPy values of f at the Richardson stencil's points."""
    f = finite.function_of(case_, "float64")
    seen: list[np.ndarray] = []

    def recording(points: np.ndarray) -> np.ndarray:
        seen.extend(points)
        return batch(points)

    finite.differentiate(f, x, "richardson", batch=recording)
    points = np.array(seen)
    got = batch(points)
    want = np.array([f(p) for p in points])
    return float(np.max(np.abs(got - want) / np.spacing(np.maximum(np.abs(got), np.abs(want)))))


def rows(sizes: tuple[int, ...] = (10, 100), repeats: int = 5) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        case_ = rosenbrock_case(n)
        x = case_.inputs["x"].astype(np.float64)
        f = finite.function_of(case_, "float64")
        batch, why = finite.batched_function(case_, "float64")
        if batch is None:
            raise SystemExit(f"batched evaluation is not available: {why}")
        work: dict[str, Callable[[Any], finite.FiniteResult]] = {
            "central gradient": lambda b: finite.differentiate(f, x, "central", estimate=False, batch=b),
            "richardson gradient": lambda b: finite.differentiate(f, x, "richardson", batch=b),
            "Hessian": lambda b: finite.hessian_matrix(f, x, batch=b),
        }
        for what, run in work.items():
            truth = rosen_hess(x) if what == "Hessian" else rosen_der(x)
            row: dict[str, Any] = {"n": n, "derivative": what}
            for label, b in (("per point", None), ("batched", batch)):
                first, median, result = _time(lambda: run(b), repeats if n < 100 or what != "Hessian" else 1)
                row[f"{label} first s"] = first
                row[f"{label} median s"] = median
                row[f"{label} calls of f"] = result.evaluations
                row[f"{label} rel error"] = float(np.linalg.norm(result.value - truth) / np.linalg.norm(truth))
                if b is not None:
                    row["batched rounds"] = result.batches
            row["speed-up (median)"] = row["per point median s"] / row["batched median s"]
            out.append(row)
        ulps = _ulps(case_, x, batch)
        for row in out[-len(work):]:
            row["max ulps of f"] = ulps
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = pd.DataFrame(rows(repeats=args.repeats))
    print(table.to_markdown(index=False, floatfmt=".3g") if args.markdown else table.to_string(index=False))


if __name__ == "__main__":
    main()
