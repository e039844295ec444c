"""Cost of the certified reference at scale: a 500×500 quadratic form and Rosenbrock with 10⁴ inputs.

    python benchmarks/reference_cost.py [--markdown]

Each reference is computed once, cold (no cache), and checked against the closed-form
gradient: (A + Aᵀ)x/2 for the quadratic form, SciPy's ``rosen_der`` for Rosenbrock.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _quadratic(n: int):
    from diffbench import case

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((n, n))

    def quadratic_form(x, xp):
        return 0.5 * x @ (xp.asarray(matrix) @ x)

    point = rng.standard_normal(n)
    return case(inputs={"x": point}, name=f"quadratic_form_{n}")(quadratic_form), 0.5 * (matrix + matrix.T) @ point


def _rosenbrock(n: int):
    from scipy.optimize import rosen_der

    from diffbench import case

    def rosenbrock(x, xp):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    point = np.random.default_rng(1).uniform(-2, 2, n)
    return case(inputs={"x": point}, name=f"rosenbrock_{n}")(rosenbrock), rosen_der(point)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (for RESULTS.md)")
    args = parser.parse_args()
    from diffbench.reference import reference

    rows = []
    for label, (one, closed_form) in (("quadratic form 500×500", _quadratic(500)),
                                      ("Rosenbrock n = 10⁴", _rosenbrock(10_000))):
        start = time.perf_counter()
        ref = reference(one)
        seconds = time.perf_counter() - start
        got = ref.values["x"]
        # the closed forms are evaluated in float64 (their own rounding is ~1e-13 relative here)
        agreement = float(np.max(np.abs(got - closed_form)) / np.max(np.abs(closed_form)))
        rows.append((label, one.size, seconds, ref.digits, agreement))
    if args.markdown:
        print("| case | inputs | seconds | certified digits | max relative difference to the closed form (float64) |")
        print("| --- | --- | --- | --- | --- |")
        for label, n, seconds, digits, agreement in rows:
            print(f"| {label} | {n} | {seconds:.1f} | {digits} | {agreement:.1e} |")
    else:
        for label, n, seconds, digits, agreement in rows:
            print(f"{label}: {n} inputs, {seconds:.1f} s, certified to {digits} digits, "
                  f"closed form within {agreement:.1e}")


if __name__ == "__main__":
    main()
