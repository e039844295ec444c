"""Cost of diagnosing one inaccurate finite-difference row against the cost of the gradient, by input count.

    python benchmarks/diagnosis_cost.py [--markdown] [--sizes 100 1000 10000]

The case is log-sum-exp of n values near 100, plus 10⁴ (∇ = softmax(x) ≈ 1/n each, |f| ≈ 10⁴):
forward differences lose up to n·eps·|f|/h of the gradient to rounding (h = 1.5e-8·100), about 1.5e-4 at
n = 100, beyond their tolerance 1.5e-6, so the row is ``inaccurate`` at every size measured. Timed: the
certified reference (once, cold), the forward-difference gradient, and ``diagnose.judge`` on it (the
verdict with its diagnosis: the kink search, the Taylor test, the rounding model). Target: the
diagnosis at n = 1000 within 2 s, and its cost a few reference gradients whatever n (no loop over the
inputs that evaluates the reference).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

TARGET_S = 2.0


def _logsumexp(n: int):
    from diffbench import case

    point = 100 + 0.1 * np.random.default_rng(0).standard_normal(n)

    def logsumexp(x, xp):
        m = xp.max(x)
        return m + xp.log(xp.sum(xp.exp(x - m))) + 1e4

    return case(inputs={"x": point}, name=f"logsumexp_{n}")(logsumexp)


def measure(n: int) -> tuple[float, float, float, str, str]:
    """(reference s, gradient s, diagnosis s, status, cause) for log-sum-exp of n inputs."""
    from diffbench.diagnose import judge
    from diffbench.engines import flatten, get_engine
    from diffbench.reference import reference

    one = _logsumexp(n)
    start = time.perf_counter()
    ref = reference(one, "float64")
    ref_s = time.perf_counter() - start
    start = time.perf_counter()
    prepared = get_engine("finite").prepare(one, "forward", "float64")
    flat = flatten(prepared.gradient(), ["x"])
    grad_s = time.perf_counter() - start
    start = time.perf_counter()
    verdict = judge(one, "finite", "forward", "float64", flat, ref, step=prepared.info.get("step"))
    return ref_s, grad_s, time.perf_counter() - start, str(verdict.status), str(verdict.cause)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (for RESULTS.md)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    args = parser.parse_args()
    rows = [(n, *measure(n)) for n in args.sizes]
    if args.markdown:
        print("| inputs | reference (s) | forward differences (s) | diagnosis (s) | status | cause |")
        print("| --- | --- | --- | --- | --- | --- |")
        for n, ref_s, grad_s, diag_s, status, cause in rows:
            print(f"| {n} | {ref_s:.2f} | {grad_s:.3f} | {diag_s:.2f} | {status} | {cause} |")
    else:
        for n, ref_s, grad_s, diag_s, status, cause in rows:
            flag = "" if n != 1000 or diag_s <= TARGET_S else f"  (over the {TARGET_S:.0f} s target)"
            print(f"n = {n}: reference {ref_s:.2f} s, forward differences {grad_s:.3f} s, "
                  f"diagnosis {diag_s:.2f} s ({status}, {cause}){flag}")


if __name__ == "__main__":
    main()
