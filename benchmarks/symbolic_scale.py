"""SymPy against SymEngine: differentiate and compile Rosenbrock's gradient at growing n.

    python benchmarks/symbolic_scale.py [--markdown] [--sympy-max N]
    python benchmarks/symbolic_scale.py --deep [--steps 3,5,7,20]

For each n, a fresh case (nothing cached) is prepared by the symbolic method's ``numpy``
variant (SymPy: trace, ``sympy.diff``, ``lambdify`` with CSE) and by its ``symengine``
variant (SymEngine: trace, diff, ``symengine.Lambdify`` with CSE); the column is the row's
``prepare_s`` (trace + differentiate + compile, float64). Each gradient is checked against
SciPy's ``rosen_der``. SymPy runs up to ``--sympy-max`` (default 300: at n = 1000 it needs
about a minute); SymEngine runs at every size, up to 10⁴. ``--hessian`` adds SymEngine's
Hessian at n = 100 against ``rosen_hess``.

``--deep`` measures SymPy on a deep unrolled expression instead: a charged particle's Euler steps
(gradbench's particle: each step's acceleration (x − c)/‖x − c‖³ of two charges, one of them moved by the
control w, a scalar input), whose expression shares every step's subexpressions. For each number of
steps, the ``numpy`` variant's prepare (trace, budget counts, and where within budget differentiate and
compile) with SymPy's sign heuristic for sums on (as SymPy builds by default) and off (as diffbench
builds: ``symbolic.sign_heuristics_off``), SymPy's cache cleared before each; both gradients must agree.
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


def _particle(steps: int, dt: float = 0.5):
    from diffbench import case

    def particle(w, xp):
        wx = w[0]
        x0, x1, v0, v1 = xp.asarray(0.0), xp.asarray(8.0), xp.asarray(0.75), xp.asarray(0.0)
        for _ in range(steps):
            a0, a1 = 0.0, 0.0
            for c0, c1 in ((10.0, 10.0 - wx), (10.0, 0.0)):
                d0, d1 = x0 - c0, x1 - c1
                cube = (d0 * d0 + d1 * d1) ** 1.5
                a0, a1 = a0 + d0 / cube, a1 + d1 / cube
            x0, x1, v0, v1 = x0 + dt * v0, x1 + dt * v1, v0 + dt * a0, v1 + dt * a1
        hit = x0 - x1 / v1 * v0
        return hit * hit

    return case(inputs={"w": [0.0]}, name=f"particle_{steps}")(particle)


def measure_deep(steps: int, heuristic: bool) -> tuple[float, str, float | None]:
    """(seconds, outcome, gradient) of the numpy variant's prepare on ``steps`` unrolled particle steps."""
    import contextlib

    from sympy.core.cache import clear_cache

    from diffbench.engines import Skip, get_engine, symbolic

    clear_cache()
    saved = symbolic.sign_heuristics_off
    if heuristic:
        symbolic.sign_heuristics_off = contextlib.nullcontext  # SymPy's default construction
    start = time.perf_counter()
    try:
        prepared = get_engine("symbolic").prepare(_particle(steps), "numpy", "float64")
        value = float(prepared.gradient()["w"][0])
        return time.perf_counter() - start, "prepared", value
    except Skip as exc:
        return time.perf_counter() - start, f"skipped: {str(exc)[:70]}…", None
    finally:
        symbolic.sign_heuristics_off = saved


def deep_main(steps_list: list[int]) -> None:
    print("| steps | SymPy's default build: prepare s (outcome) | without its sign heuristic: prepare s (outcome) | "
          "gradients |")
    print("| --- | --- | --- | --- |")
    for steps in steps_list:
        before = measure_deep(steps, heuristic=True)
        after = measure_deep(steps, heuristic=False)
        same = ("equal" if before[2] is None or after[2] is None or before[2] == after[2] or
                abs(before[2] - after[2]) <= 1e-12 * abs(after[2]) else f"{before[2]!r} vs {after[2]!r}")
        print(f"| {steps} | {before[0]:.2f} ({before[1]}) | {after[0]:.2f} ({after[1]}) | "
              f"{same if before[2] is not None and after[2] is not None else '—'} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--sympy-max", type=int, default=300, help="largest n SymPy is run at (default 300)")
    parser.add_argument("--sizes", default="100,300,1000,10000")
    parser.add_argument("--hessian", action="store_true")
    parser.add_argument("--deep", action="store_true", help="SymPy on unrolled particle steps instead (see above)")
    parser.add_argument("--steps", default="3,5,7,20", help="numbers of steps for --deep")
    args = parser.parse_args()
    if args.deep:
        deep_main([int(s) for s in args.steps.split(",")])
        return
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
