"""Jacobian cost columns (diffbench.jacobian_cost) from hand-made rows: every expected number is the arithmetic
of the brief's definitions done by hand next to it."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from diffbench.jacobian_cost import JACOBIAN_COST_COLUMNS, jacobian_cost


def _row(case, method, variant, seconds, outputs, n_inputs, status="ok", order=1, dtype="float64"):
    return dict(case=case, method=method, variant=variant, dtype=dtype, device="CPU", order=order, status=status,
                outputs=outputs, n_inputs=n_inputs, time_median_s=seconds)


ROWS = pd.DataFrame([
    # wide: 2 outputs, 100 inputs -> reverse mode should win
    _row("wide", "tape", "function", 0.01, 2, 100),
    _row("wide", "tape", "forward", 0.2, 2, 100),
    _row("wide", "tape", "vjp", 0.001, 2, 100),
    _row("wide", "tape", "jvp", 0.0005, 2, 100),
    # tall: 100 outputs, 2 inputs -> forward mode should win
    _row("tall", "tape", "function", 0.03, 100, 2),
    _row("tall", "tape", "vjp", 0.001, 100, 2),
    _row("tall", "tape", "jvp", 0.002, 100, 2),
    # a method with a vjp row only, and a failed Jacobian row
    _row("tall", "finite", "central", 0.004, 100, 2),
    _row("tall", "finite", "vjp", 0.0001, 100, 2),
    _row("tall", "symbolic", "numpy", None, 100, 2, status="error"),
    # left out: a scalar case, an order-2 row, an annotation
    _row("scalar", "tape", "function", 0.001, 1, 3),
    _row("wide", "tape", "function", 0.5, 2, 100, order=2),
    _row("wide", "sweep", "central-00", 0.1, 2, 100),
])


def _one(table, case, method, variant):
    found = table[(table["case"] == case) & (table["method"] == method) & (table["variant"] == variant)]
    assert len(found) == 1
    return found.iloc[0]


def test_columns_and_rows_kept():
    table = jacobian_cost(ROWS)
    assert list(table.columns) == JACOBIAN_COST_COLUMNS
    kept = sorted(zip(table["case"], table["method"], table["variant"]))
    assert kept == [("tall", "finite", "central"), ("tall", "symbolic", "numpy"), ("tall", "tape", "function"),
                    ("wide", "tape", "forward"), ("wide", "tape", "function")]


def test_wide_jacobian_reverse_mode_is_cheaper():
    row = _one(jacobian_cost(ROWS), "wide", "tape", "function")
    assert row["reverse_s"] == pytest.approx(2 * 0.001)          # m × vjp
    assert row["forward_s"] == pytest.approx(100 * 0.0005)       # N × jvp
    assert row["over_reverse"] == pytest.approx(0.01 / 0.002)    # 5: the whole Jacobian costs 5 loops of VJPs
    assert row["over_forward"] == pytest.approx(0.01 / 0.05)     # 0.2
    assert row["cheaper_mode"] == "reverse"
    forward = _one(jacobian_cost(ROWS), "wide", "tape", "forward")
    assert forward["over_forward"] == pytest.approx(0.2 / 0.05)  # 4


def test_tall_jacobian_forward_mode_is_cheaper():
    row = _one(jacobian_cost(ROWS), "tall", "tape", "function")
    assert row["reverse_s"] == pytest.approx(100 * 0.001)        # 0.1
    assert row["forward_s"] == pytest.approx(2 * 0.002)          # 0.004
    assert row["over_reverse"] == pytest.approx(0.3)
    assert row["over_forward"] == pytest.approx(7.5)
    assert row["cheaper_mode"] == "forward"


def test_missing_products_and_failed_rows_are_nan_not_zero():
    table = jacobian_cost(ROWS)
    central = _one(table, "tall", "finite", "central")
    assert central["reverse_s"] == pytest.approx(100 * 0.0001)
    assert central["over_reverse"] == pytest.approx(0.4)
    assert math.isnan(central["jvp_s"]) and math.isnan(central["over_forward"])
    assert central["cheaper_mode"] == ""
    failed = _one(table, "tall", "symbolic", "numpy")
    assert math.isnan(failed["jacobian_s"]) and math.isnan(failed["over_reverse"])
    # a product row that measured nothing gives no product time
    broken = ROWS.copy()
    broken.loc[(broken["case"] == "wide") & (broken["variant"] == "vjp"), "status"] = "timeout"
    assert math.isnan(_one(jacobian_cost(broken), "wide", "tape", "function")["reverse_s"])


def test_tables_without_vector_rows_give_an_empty_table():
    assert jacobian_cost(ROWS.drop(columns=["outputs"])).empty
    assert jacobian_cost(ROWS[ROWS["case"] == "scalar"]).empty
    assert list(jacobian_cost(pd.DataFrame()).columns) == JACOBIAN_COST_COLUMNS
    # outputs as read back from a CSV: text, empty for scalar cases
    as_text = ROWS.assign(outputs=ROWS["outputs"].map(lambda m: "" if m == 1 else str(m)))
    assert len(jacobian_cost(as_text)) == 5
