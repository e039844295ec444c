"""Helpers shared by the adversarial verdict tests: one row, the order-2 rows, the reference as a flat
vector, and the 60-digit working precision their hand-derived truths are evaluated at."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from diffbench.harness import make_config, measure_case, measure_one
from diffbench.reference import reference


@pytest.fixture(autouse=True)
def sixty_digits():
    """Truths are evaluated at 60 digits; the setting is restored for the rest of the suite."""
    with mpmath.workdps(60):
        yield


def row(c, method, variant, dtype="float64"):
    return measure_one(c, method, variant, dtype)


def order2_rows(c, methods=("symbolic", "tape")):
    config = make_config(list(methods), ["float64"], None, order2=True, timing=False, devices=("CPU",), sweep=False)
    out = []
    measure_case(c, config, out.append)
    return [r for r in out if r["order"] == 2]


def ref_flat(c, dtype="float64"):
    ref = reference(c, dtype)
    return np.concatenate([np.ravel(v) for v in ref.values.values()])
