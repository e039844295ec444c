"""Tables of gradbench's evals: each method's first-order gradient time over the fastest exact method's.

    python -m diffbench run --cases cases/gradbench.py -k "gradbench or realistic" --dtypes float64 --out /tmp/gb
    python benchmarks/gradbench_tables.py /tmp/gb/results.csv

Prints one markdown table per case (float64, order 1, CPU), its rows sorted by time, for
benchmarks/RESULTS.md. The fastest exact method is the fastest symbolic or tape row that is ``ok`` or
``inaccurate`` only by the function's own cause (conditioning, cancellation); finite differences are
approximate and are compared to the same yardstick. Times are medians of the run's interleaved samples.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffbench.results import FUNCTION_CAUSES  # noqa: E402

EXACT_METHODS = ("symbolic", "tape", "jax", "torch")


def _seconds(value: float) -> str:
    if not isinstance(value, float) or math.isnan(value):
        return "—"
    return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"


def _ratio(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:.3g}×" if value < 1000 else f"{value:.3g}×".replace("e+0", "e+")


def tables(results: pd.DataFrame) -> str:
    """The markdown tables of every case in ``results`` (a results.csv read with pandas)."""
    rows = results[(results.order == 1) & (results.dtype == "float64") & results.method.isin(
        [m for m in results.method.unique() if m not in ("case", "sweep")])]
    causes = {str(c) for c in FUNCTION_CAUSES}
    out = []
    for name in dict.fromkeys(rows.case):
        one = rows[rows.case == name].copy()
        exact = one[one.method.isin(EXACT_METHODS)
                    & ((one.status == "ok") | ((one.status == "inaccurate") & one.cause.astype(str).isin(causes)))
                    & one.time_median_s.notna()]
        out.append(f"#### {name}\n")
        fastest = math.nan
        if len(exact):
            best = exact.loc[exact.time_median_s.idxmin()]
            fastest = float(best.time_median_s)
            out.append(f"fastest exact: {best.method}/{best.variant}, {_seconds(fastest)}\n")
        else:
            out.append("no exact method was timed\n")
        out.append("| method/variant | status | gradient time | over the fastest exact | prepare |")
        out.append("| --- | --- | --- | --- | --- |")
        one["order_key"] = one.time_median_s.fillna(math.inf)
        for _, row in one.sort_values("order_key", kind="stable").iterrows():
            time_s = float(row.time_median_s) if pd.notna(row.time_median_s) else math.nan
            out.append(f"| {row.method}/{row.variant} | {row.status} | {_seconds(time_s)} | "
                       f"{_ratio(time_s / fastest) if fastest == fastest else '—'} | "
                       f"{_seconds(float(row.prepare_s)) if pd.notna(row.prepare_s) else '—'} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a run's results.csv")
    args = parser.parse_args(argv)
    print(tables(pd.read_csv(args.results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
