"""SymPy against SymEngine: differentiate and compile Rosenbrock's gradient at growing n.

    python benchmarks/symbolic_scale.py [--markdown] [--sympy-max N]

For each n, a fresh case (nothing cached) is prepared by the symbolic method's ``numpy``
variant (SymPy: trace, ``sympy.diff``, ``lambdify`` with CSE) and by its ``symengine``
variant (SymEngine: trace, diff, ``symengine.Lambdify`` with CSE); the column is the row's
``prepare_s`` (trace + differentiate + compile, float64). Each gradient is checked against
SciPy's ``rosen_der``. SymPy runs up to ``--sympy-max`` (default 300: at n = 1000 it needs
about a minute); SymEngine runs at every size, up to 10⁴. ``--hessian`` adds SymEngine's
Hessian at n = 100 against ``rosen_hess``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _rosenbrock(n: int):
    from diffbench import case

    point = np.random.default_rng(n).uniform(-2.0, 2.0, n)

    def rosenbrock(x, xp):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    return case(inputs={"x": point}, name=f"rosenbrock_{n}")(rosenbrock), point


def measure(n: int, variant: str) -> tuple[float, float, float]:
    """(prepare_s, wall seconds of prepare, max relative difference to rosen_der) for a fresh case."""
    from scipy.optimize import rosen_der

    from diffbench.engines import flatten, get_engine

    c, point = _rosenbrock(n)
    start = time.perf_counter()
    prepared = get_engine("symbolic").prepare(c, variant, "float64")
    wall = time.perf_counter() - start
    grad = flatten(prepared.gradient(), ["x"])
    truth = rosen_der(point)
    return prepared.prepare_s, wall, float(np.max(np.abs(grad - truth) / np.maximum(np.abs(truth), 1.0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--sympy-max", type=int, default=300, help="largest n SymPy is run at (default 300)")
    parser.add_argument("--sizes", default="100,300,1000,10000")
    parser.add_argument("--hessian", action="store_true")
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        sympy = measure(n, "numpy") if n <= args.sympy_max and n <= 2000 else None
        engine = measure(n, "symengine")
        rows.append((n, sympy, engine))
        if not args.markdown:
            print(n, sympy, engine, flush=True)
    if args.markdown:
        print("| n | SymPy (numpy) prepare_s | SymEngine prepare_s | SymPy / SymEngine | SymEngine wall (incl. expression counts) "
              "| max rel. difference to rosen_der (SymPy; SymEngine) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for n, sympy, engine in rows:
            sym_text = f"{sympy[0]:.2f}" if sympy else "not run"
            ratio = f"{sympy[0] / engine[0]:.0f}×" if sympy else "—"
            err = f"{sympy[2]:.1e}; {engine[2]:.1e}" if sympy else f"—; {engine[2]:.1e}"
            print(f"| {n} | {sym_text} | {engine[0]:.2f} | {ratio} | {engine[1]:.2f} | {err} |")
    if args.hessian:
        from scipy.optimize import rosen_hess

        from diffbench.engines import get_engine

        c, point = _rosenbrock(100)
        start = time.perf_counter()
        hess = get_engine("symbolic").hessian(c, "symengine", "float64")
        took = time.perf_counter() - start
        err = float(np.max(np.abs(hess - rosen_hess(point))) / np.abs(rosen_hess(point)).max())
        print(f"\nSymEngine Hessian, Rosenbrock n = 100 (trace, differentiate twice, compile): {took:.2f} s, "
              f"max difference to rosen_hess {err:.1e} of its largest entry")


if __name__ == "__main__":
    main()
