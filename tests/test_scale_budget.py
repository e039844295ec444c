"""``scale --budget`` is a limit, not only a prediction: a size that runs past it is stopped from outside."""

from __future__ import annotations

import time

import pytest
from conftest import ROOT  # noqa: F401 - puts the repository first on the path

SLOW = '''
import time
from diffbench import case

@case(inputs={"x": [1.0, 2.0]}, sizes=lambda n: {"x": [1.0] * n})
def slow_at_size(x, xp):
    # every evaluation sleeps 0.01 s per element: at n = 400 a call takes 4 s
    time.sleep(0.01 * x.shape[0])
    return xp.sum(x * x)
'''


@pytest.mark.slow
def test_a_size_the_prediction_lets_through_is_stopped_at_the_budget(tmp_path):
    from diffbench.case import load_cases
    from diffbench.scale import study

    # the first size measured is the slow one: there is no history to predict from (prediction 0 s), so only the
    # limit enforced from outside can stop it. n = 400: a call sleeps 4 s, central differences make 801 calls
    path = tmp_path / "slow_cases.py"
    path.write_text(SLOW)
    case = load_cases(path)[0]
    began = time.perf_counter()
    table = study(case, [400, 500], ["finite"], budget_s=5.0, variants={"finite": ("central",)}, isolate=True)
    assert time.perf_counter() - began < 300  # not the 53 minutes the size would take
    first, second = table.iloc[0], table.iloc[1]
    assert first["status"] == "timeout" and "its budget of 5 s (--budget" in first["diagnosis"]
    assert second["status"] == "skipped" and "ran past its budget of 5 s (--budget) at n = 400" in \
        second["diagnosis"]
