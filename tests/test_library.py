"""Every case in cases/ as a regression test: symbolic and tape meet the reference within
their tolerances, or have exactly the status the case declares (and explains) with expect=."""

import pytest
from conftest import ROOT

from diffbench.case import load_cases, matches
from diffbench.harness import make_config, measure_case

# the realistic sizes (tag "realistic", cases/gradbench.py) take minutes each: `run --profile full` measures them
CASES = [c for c in load_cases(ROOT / "cases") if "realistic" not in c.tags]
# gradbench's workloads (minutes with every method even at their tiny sizes): first derivatives only here, where
# tests/test_gradbench_cases.py holds their truths; marked slow
PARAMS = [pytest.param(c, marks=pytest.mark.slow) if "gradbench" in c.tags else c for c in CASES]


@pytest.mark.parametrize("one", PARAMS, ids=[c.name for c in CASES])
def test_case_statuses(one):
    config = make_config(["symbolic", "tape"], ["float32", "float64"],
                         {"symbolic": ["numpy"], "tape": ["eager", "function"]}, timing=False, devices=("CPU",), sweep=False,
                         order2="gradbench" not in one.tags)
    rows = []
    measure_case(one, config, rows.append)
    assert rows
    wrong = [f"{r['method']}/{r['variant']} {r['dtype']} order {r['order']}: expected {r['expected']}, got "
             f"{r['status']} ({r['diagnosis']})" for r in rows if not matches(r["status"], r["expected"])]
    assert not wrong, "\n".join(wrong)
    for r in rows:
        if r["status"] == "ok" and r["order"] == 1:
            import numpy as np

            from diffbench.metrics import tolerance

            # ok means every component within tolerance at its own scale, in units of eps
            eps = float(np.finfo(r["dtype"]).eps)
            assert r["max_error_eps"] <= tolerance(r["method"], r["variant"], r["dtype"]) / eps
