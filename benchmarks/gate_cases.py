"""Four small cases for benchmarks/gate_false_alarms.py.

``DIFFBENCH_GATE_SLOWER=<case name>`` makes that case evaluate its body twice (the same value,
twice the work): a real slowdown of the code under test that leaves every gradient unchanged.
The definition hash is the same with and without it, as for a slower library under the same code.
"""

import os

from diffbench import case, uniform

SLOWER = os.environ.get("DIFFBENCH_GATE_SLOWER", "")


def _twice(name, body, *args):
    value = body(*args)
    if SLOWER == name:
        # the same value (v + v is exact and /2 undoes it), computed twice
        value = (value + body(*args)) / 2
    return value


def _rosenbrock(x, xp):
    return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


@case(inputs={"x": uniform(12, -2.0, 2.0, seed=12)})
def gate_rosenbrock(x, xp):
    """Rosenbrock in 12 dimensions."""
    return _twice("gate_rosenbrock", _rosenbrock, x, xp)


def _logistic(w, xp):
    a = xp.asarray([[0.3, -1.2, 0.8], [1.1, 0.4, -0.6], [-0.9, 0.2, 1.5], [0.5, 0.7, -0.3]])
    y = xp.asarray([1.0, 0.0, 1.0, 0.0])
    z = a @ w
    return xp.sum(xp.log(1 + xp.exp(z)) - y * z)


@case(inputs={"w": [0.2, -0.4, 0.6]})
def gate_logistic(w, xp):
    """Logistic regression loss on four fixed samples."""
    return _twice("gate_logistic", _logistic, w, xp)


def _spring(x, xp):
    stretch = xp.sqrt((x[1:] - x[:-1]) ** 2 + 1.0) - 1.2
    return xp.sum(stretch**2)


@case(inputs={"x": uniform(8, -1.0, 1.0, seed=8)})
def gate_springs(x, xp):
    """A chain of springs of rest length 1.2."""
    return _twice("gate_springs", _spring, x, xp)


def _tanh_layer(w, xp):
    h = xp.tanh(w * 0.5 + 0.1)
    return xp.sum(h * h) + xp.sum(xp.exp(-w * w))


@case(inputs={"w": uniform(6, -1.0, 1.0, seed=6)})
def gate_tanh(w, xp):
    """A tanh layer's squared activations plus a Gaussian penalty."""
    return _twice("gate_tanh", _tanh_layer, w, xp)
