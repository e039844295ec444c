"""``assert_gradients`` at the size of real models: time by input count, and a 10 %-wrong component caught.

    python benchmarks/products.py [--markdown] [--sizes 10 100 1000 1000000] [--seeds 3]

The function is f = Σ tanh(xᵢ·wᵢ)² with x, w uniform in [−1, 1] (2n inputs, float64), its gradient by
``tf.GradientTape``. Timed: one ``diffbench.assert_gradients(f, {x, w})`` call each, after one warm-up
call at n = 10 (TensorFlow's import and first op are not the check's cost). Past
``PRODUCT_CHECK_INPUTS`` inputs it checks ``CHECK_DIRECTIONS`` random-sign directional derivatives
against Richardson differences (diffbench.products.check_directions).

Then the same at the largest size with a ``tf.custom_gradient`` whose x-gradient is 10 % wrong in one
component (for each of ``--seeds`` points, the component with the largest |wᵢ|, whose derivative is of
ordinary size; 10 % of a vanishing component is no error): it must raise AssertionError every time, and the
margin (the smallest ratio of the difference to the tolerance over the directions) says by how much.

Targets: n = 10⁶ within 5 s and n = 1000 within 2 s on the project's 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

TARGETS_S = {1000: 2.0, 1_000_000: 5.0}


def _point(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(-1, 1, n), "w": rng.uniform(-1, 1, n)}


def _correct():
    import tensorflow as tf

    def f(x, w):
        return tf.reduce_sum(tf.tanh(x * w) ** 2)
    return f


def _wrong(n: int, i: int):
    import tensorflow as tf

    mask = np.zeros(n)
    mask[i] = 0.1

    @tf.custom_gradient
    def f(x, w):
        y = tf.tanh(x * w)

        def grad(dy):
            d = 2 * y * (1 - y**2)
            return dy * d * w * (1 + tf.constant(mask)), dy * d * x
        return tf.reduce_sum(y**2), grad

    return lambda x, w: f(x, w)


def timed_check(n: int) -> tuple[float, int, float]:
    """(seconds of one assert_gradients call on the correct gradient at n (2n inputs), the calls of f it made,
    the median seconds of one call of f alone)."""
    import statistics

    import tensorflow as tf

    from diffbench import assert_gradients

    inputs = _point(n, 0)
    f = _correct()
    calls = [0]

    def counted(x, w):
        calls[0] += 1
        return f(x, w)

    start = time.perf_counter()
    assert_gradients(counted, inputs)
    seconds = time.perf_counter() - start
    x, w = tf.constant(inputs["x"]), tf.constant(inputs["w"])
    alone = []
    for _ in range(5):
        begin = time.perf_counter()
        float(f(x, w))
        alone.append(time.perf_counter() - begin)
    return seconds, calls[0], statistics.median(alone)


def caught(n: int, seed: int) -> tuple[bool, float, float]:
    """(raised, seconds, smallest difference/tolerance over the directions) for the 10 %-wrong component."""
    import tensorflow as tf

    from diffbench import assert_gradients
    from diffbench.products import check_directions

    inputs = _point(n, seed)
    i = int(np.argmax(np.abs(inputs["w"])))
    wrong = _wrong(n, i)
    start = time.perf_counter()
    try:
        assert_gradients(wrong, inputs)
        raised = False
    except AssertionError:
        raised = True
    seconds = time.perf_counter() - start
    # the margin, from the same check on the same gradient (not timed)
    x, w = tf.Variable(inputs["x"]), tf.Variable(inputs["w"])
    with tf.GradientTape() as tape:
        value = wrong(x, w)
    gradient = np.concatenate([g.numpy() for g in tape.gradient(value, [x, w])])
    point = np.concatenate([inputs["x"], inputs["w"]])
    f = _correct()
    found = check_directions(gradient, lambda p: float(f(tf.constant(p[:n]), tf.constant(p[n:]))), point,
                             float(np.finfo(np.float64).eps))
    return raised, seconds, float(np.min(np.abs(found.got - found.expected) / found.tolerance))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print markdown tables (for RESULTS.md)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 1_000_000])
    parser.add_argument("--seeds", type=int, default=3, help="points at which the wrong component is sought")
    args = parser.parse_args()
    timed_check(10)  # warm-up: TensorFlow's import and first ops
    load = os.getloadavg()[0]
    times = [(n, timed_check(n)) for n in args.sizes]
    largest = max(args.sizes)
    found = [(seed, *caught(largest, seed)) for seed in range(args.seeds)]
    load_after = os.getloadavg()[0]
    bar = "|" if args.markdown else " "
    print(f"{bar} n (2n inputs) {bar} assert_gradients (s) {bar} target (s) {bar} calls of f {bar} "
          f"one call of f (s) {bar}")
    if args.markdown:
        print("| --- | --- | --- | --- | --- |")
    for n, (seconds, calls, alone) in times:
        target = TARGETS_S.get(n)
        print(f"{bar} {n} {bar} {seconds:.2f} {bar} {'' if target is None else f'{target:g}'} {bar} {calls} {bar} "
              f"{alone:.3g} {bar}")
    print()
    print(f"{bar} n {bar} seed {bar} 10 %-wrong component caught {bar} seconds {bar} "
          f"smallest difference/tolerance {bar}")
    if args.markdown:
        print("| --- | --- | --- | --- | --- |")
    for seed, raised, seconds, margin in found:
        print(f"{bar} {largest} {bar} {seed} {bar} {'yes' if raised else 'NO'} {bar} {seconds:.2f} {bar} "
              f"{margin:.3g} {bar}")
    print(f"\nload average (1 min) {load:.1f} before, {load_after:.1f} after; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
