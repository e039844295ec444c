"""Forward mode (one vectorised pass over all tangents) against reverse mode, per gradient.

    python benchmarks/forward_mode.py [--dtype float64] [--profile full] [--markdown]

The tape's ``forward`` variant (``tf.autodiff.ForwardAccumulator`` under ``tf.vectorized_map``,
traced once) and its ``function`` variant (``tf.GradientTape`` in a ``tf.function``) on
Rosenbrock with n = 10, 100, 1000 and a 21-parameter MLP (3 → 4 tanh → 1, mean squared error
over 8 samples). Both are timed in this one run, alternating, with diffbench's own timer
(``diffbench.timing.measure`` on ``Prepared.timed``, the call the harness times); the ratio
is forward / reverse. Both gradients are checked against SciPy's ``rosen_der`` (Rosenbrock)
or against each other (the MLP) before timing.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np


def _rosenbrock(n: int):
    from diffbench import case

    def rosenbrock(x, xp):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    point = np.random.default_rng(n).uniform(-2, 2, n)
    return case(inputs={"x": point}, name=f"rosenbrock_{n}")(rosenbrock)


def _mlp():
    from diffbench import case

    rng = np.random.default_rng(21)
    samples, targets = rng.standard_normal((8, 3)), rng.standard_normal(8)

    def mlp(W1, b1, w2, b2, xp):
        hidden = xp.tanh(xp.asarray(samples) @ W1 + b1)
        return xp.mean((hidden @ w2 + b2 - xp.asarray(targets)) ** 2)

    inputs = {"W1": rng.standard_normal((3, 4)) / 2, "b1": np.zeros(4), "w2": rng.standard_normal(4) / 2, "b2": 0.1}
    return case(inputs=inputs, name="mlp_21")(mlp)


def _agree(forward: dict, reverse: dict, want: np.ndarray | None, dtype: str) -> float:
    """Largest difference of the forward gradient from the truth (or from reverse mode), relative to its scale."""
    from diffbench.engines import flatten

    order = list(forward)
    got = flatten(forward, order)
    truth = want if want is not None else flatten(reverse, order)
    return float(np.max(np.abs(got - truth)) / np.max(np.abs(truth)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--profile", default="full", choices=["quick", "full"])
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (for RESULTS.md)")
    args = parser.parse_args()
    import pandas as pd
    from scipy.optimize import rosen_der

    from diffbench.engines import get_engine
    from diffbench.timing import PROFILES, measure

    engine = get_engine("tape")
    profile = PROFILES[args.profile]
    cases = [(_rosenbrock(n), True) for n in (10, 100, 1000)] + [(_mlp(), False)]
    rows = []
    for one, is_rosenbrock in cases:
        forward = engine.prepare(one, "forward", args.dtype)
        reverse = engine.prepare(one, "function", args.dtype)
        point = one.inputs["x"].astype(args.dtype).astype(np.float64) if is_rosenbrock else None
        error = _agree(forward.gradient(), reverse.gradient(), rosen_der(point) if is_rosenbrock else None,
                       args.dtype)
        # alternate the two, three times each, and keep the median of each one's medians
        forward_s, reverse_s, f_s = [], [], []
        for _ in range(3):
            forward_s.append(measure(forward.timed, profile).median_s)
            reverse_s.append(measure(reverse.timed, profile).median_s)
            f_s.append(measure(reverse.f_timed, profile).median_s)
        fwd, rev, f = (float(np.median(s)) for s in (forward_s, reverse_s, f_s))
        rows.append({"case": one.name, "inputs": one.size, "pass": forward.info["forward_pass"],
                     "forward_s": fwd, "reverse_s": rev, "forward/reverse": fwd / rev, "forward/f": fwd / f,
                     "forward prepare_s": forward.prepare_s, "reverse prepare_s": reverse.prepare_s,
                     "max rel. error": error})
    table = pd.DataFrame(rows)
    if args.markdown:
        print(f"{platform.python_version()}, {args.dtype}, profile {args.profile}\n")
        print(table.to_markdown(index=False, floatfmt=".3g"))
    else:
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
