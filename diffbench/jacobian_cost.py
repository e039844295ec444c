"""What a Jacobian costs, read off a results table: per method, the time of one whole Jacobian against what
computing it from products would cost.

A Jacobian of m outputs and N inputs is m vector-Jacobian products (reverse mode, one row each) or N
Jacobian-vector products (forward mode, one column each). The ``vjp`` and ``jvp`` rows of a method time one
product of each kind, so ``m × vjp`` and ``N × jvp`` are the costs of building the Jacobian product by product,
and the smaller says which mode should win for that shape. A full-Jacobian row's ratio to each shows what the
method's own Jacobian (vectorised, traced, or by differences) gains or loses against that. Nothing is measured
here: the columns are computed from rows already in the table (columns in reports/README.md, "Jacobian cost").
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .results import ANNOTATIONS, PRODUCT_VARIANTS

__all__ = ["PRODUCT_VARIANTS", "JACOBIAN_COST_COLUMNS", "jacobian_cost"]


JACOBIAN_COST_COLUMNS = ["case", "method", "variant", "dtype", "device", "outputs", "n_inputs", "status",
                         "jacobian_s", "vjp_s", "jvp_s", "reverse_s", "forward_s", "over_reverse", "over_forward",
                         "cheaper_mode"]

#: statuses whose rows measured no time (nothing ran to completion)
_UNTIMED = ("error", "timeout", "skipped")


def _timed(row: Any) -> float:
    """The row's median time, NaN where it has none."""
    value = row.get("time_median_s")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if value > 0 and row.get("status") not in _UNTIMED else math.nan


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def jacobian_cost(df: pd.DataFrame) -> pd.DataFrame:
    """One row per full-Jacobian measurement of a vector-output case (``outputs`` > 1, order 1, not a product
    row), with the columns of :data:`JACOBIAN_COST_COLUMNS`:

    - ``jacobian_s``: seconds per whole Jacobian (the row's ``time_median_s``);
    - ``vjp_s`` / ``jvp_s``: seconds per product, from the ``vjp`` / ``jvp`` row of the same case, method, dtype
      and device (NaN where that row is missing or measured nothing);
    - ``reverse_s`` = m × ``vjp_s`` and ``forward_s`` = N × ``jvp_s``: the Jacobian built product by product;
    - ``over_reverse`` = ``jacobian_s`` / ``reverse_s`` and ``over_forward`` = ``jacobian_s`` / ``forward_s``
      (below 1: the method's own Jacobian beats the loop of products);
    - ``cheaper_mode``: ``forward`` where N × jvp < m × vjp, ``reverse`` where it is larger, empty where either
      is unknown.

    Product rows themselves, scalar cases, second-order rows and annotations are left out. Rows without the
    ``outputs`` column (a table written before vector outputs) give an empty table. Never raises for missing
    values: a missing time is NaN.
    """
    needed = {"case", "method", "variant", "dtype", "device", "order", "outputs", "time_median_s"}
    if df is None or len(df) == 0 or not needed <= set(df.columns):
        return pd.DataFrame(columns=JACOBIAN_COST_COLUMNS)
    outputs = pd.to_numeric(df["outputs"], errors="coerce")
    order = pd.to_numeric(df["order"], errors="coerce")
    vector = df[(outputs > 1) & (order == 1) & ~df["method"].isin(ANNOTATIONS)]
    if not len(vector):
        return pd.DataFrame(columns=JACOBIAN_COST_COLUMNS)
    products: dict[tuple[Any, ...], float] = {}
    for _, row in vector[vector["variant"].isin(PRODUCT_VARIANTS)].iterrows():
        products[(row["case"], row["method"], row["dtype"], row["device"], row["variant"])] = _timed(row)
    out = []
    for _, row in vector[~vector["variant"].isin(PRODUCT_VARIANTS)].iterrows():
        key = (row["case"], row["method"], row["dtype"], row["device"])
        m = int(float(row["outputs"]))
        n = pd.to_numeric(row.get("n_inputs"), errors="coerce")
        vjp, jvp = products.get(key + ("vjp",), math.nan), products.get(key + ("jvp",), math.nan)
        reverse = m * vjp
        forward = float(n) * jvp if pd.notna(n) else math.nan
        jacobian = _timed(row)
        cheaper = ""
        if not (math.isnan(reverse) or math.isnan(forward)) and forward != reverse:
            cheaper = "forward" if forward < reverse else "reverse"
        out.append(dict(case=row["case"], method=row["method"], variant=row["variant"], dtype=row["dtype"],
                        device=row["device"], outputs=m, n_inputs=int(n) if pd.notna(n) else None,
                        status=row.get("status"), jacobian_s=jacobian, vjp_s=vjp, jvp_s=jvp, reverse_s=reverse,
                        forward_s=forward, over_reverse=_ratio(jacobian, reverse),
                        over_forward=_ratio(jacobian, forward), cheaper_mode=cheaper))
    return pd.DataFrame(out, columns=JACOBIAN_COST_COLUMNS)
