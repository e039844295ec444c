"""Finite differences: diffbench's ``richardson`` against numdifftools' defaults.

Runs both on the functions and points ported from numdifftools' own tests
(``numdifftools_cases.py``), in float64, and measures each result against diffbench's
50-digit reference: normwise relative error ‖g − g_ref‖ / ‖g_ref‖ (absolute where the
reference is 0), the fraction of cases where diffbench is at least as accurate, and the
calls of f each makes. Also reports how often diffbench's ``error_estimate`` is at least
the true error: on these functions, and (``--library``) over every case in ``cases/``, in both
dtypes and every finite-difference variant, with the median ratio of the estimate to the true
error (an estimate that covers by being 1e6 times too large shows there).

    pip install -e ".[bench]" && python benchmarks/fd_vs_numdifftools.py [--markdown] [--library]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from numdifftools_cases import GRADIENT, HESSIAN  # noqa: E402

from diffbench.engines import finite, flatten  # noqa: E402
from diffbench.reference import reference, reference_hessian  # noqa: E402


class Counted:
    """f with a count of its calls."""

    def __init__(self, f: Callable[[np.ndarray], Any]):
        self.f, self.calls = f, 0

    def __call__(self, x: Any) -> float:
        self.calls += 1
        return float(np.real(self.f(np.asarray(x, dtype=np.float64))))


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """‖got − want‖₂ / ‖want‖₂, or the absolute error where ‖want‖₂ = 0."""
    norm = float(np.linalg.norm(want))
    diff = float(np.linalg.norm(np.asarray(got, dtype=np.float64).ravel() - want.ravel()))
    return diff / norm if norm > 0 else diff


def gradient_rows(cases: list[Any] | None = None) -> list[dict[str, Any]]:
    """One row per case (default ``GRADIENT``): both tools' gradient errors and evaluation counts, and
    diffbench's relative error estimate."""
    import numdifftools as nd

    rows = []
    for case in GRADIENT if cases is None else cases:
        x = flatten(case.inputs, list(case.inputs))
        want = flatten(reference(case).values, list(case.inputs))
        f = finite.function_of(case, "float64")
        ours = Counted(f)
        result = finite.differentiate(ours, x.copy(), "richardson")
        theirs = Counted(f)
        peer = np.atleast_1d(nd.Gradient(theirs)(x.copy()))
        err = relative_error(result.value, want)
        norm = float(np.linalg.norm(result.value)) or 1.0
        rows.append({"case": case.name, "n": x.size, "diffbench": err, "numdifftools": relative_error(peer, want),
                     "evals_diffbench": ours.calls, "evals_numdifftools": theirs.calls,
                     "estimate": float(np.linalg.norm(result.error)) / norm})
    return rows


def hessian_rows(cases: list[Any] | None = None) -> list[dict[str, Any]]:
    """One row per case (default ``HESSIAN``): both tools' Hessian errors and evaluation counts."""
    import numdifftools as nd

    rows = []
    for case in HESSIAN if cases is None else cases:
        x = flatten(case.inputs, list(case.inputs))
        want = np.asarray(reference_hessian(case), dtype=np.float64)
        f = finite.function_of(case, "float64")
        ours = Counted(f)
        result = finite.hessian_matrix(ours, x.copy())
        theirs = Counted(f)
        peer = np.atleast_2d(nd.Hessian(theirs)(x.copy()))
        rows.append({"case": case.name, "n": x.size, "diffbench": relative_error(result.value, want),
                     "numdifftools": relative_error(peer, want), "evals_diffbench": ours.calls,
                     "evals_numdifftools": theirs.calls})
    return rows


def library_rows(results: pd.DataFrame | None = None) -> pd.DataFrame:
    """The order-1 finite-difference rows of a run over the whole library (``results``: a run's
    results.csv as a DataFrame; without it, the library is run here, without timing)."""
    if results is None:
        from diffbench import load_cases, run

        cases = load_cases(Path(__file__).resolve().parent.parent / "cases")
        results = run(cases, methods=["finite"], order2=False, timing=False)
    rows = results[(results["method"] == "finite") & (results["order"] == 1)]
    # only rows with a finite gradient and a reference have a true error to bound
    return rows[rows["status"].isin(["ok", "inaccurate"])]


def coverage(rows: pd.DataFrame) -> pd.DataFrame:
    """Per variant: rows, the fraction whose ``error_estimate`` ≥ the true ``rel_error`` (coverage), how
    many estimates are infinite (no bound: a zero or unresolved gradient), the coverage among the
    finite estimates, and the median and 90th
    percentile of estimate / true error where both are finite and the true error is not 0."""
    out = []
    for variant, part in rows.groupby("variant"):
        estimate, true = part["error_estimate"].astype(float), part["rel_error"].astype(float)
        ratio = (estimate / true)[(true > 0) & np.isfinite(estimate) & np.isfinite(true)]
        bounded = np.isfinite(estimate)
        out.append({"variant": variant, "rows": len(part), "coverage": float((estimate >= true).mean()),
                    "no bound (inf)": int((~bounded).sum()),
                    "coverage of finite estimates": float((estimate[bounded] >= true[bounded]).mean()),
                    "median estimate/true": float(ratio.median()), "p90 estimate/true": float(ratio.quantile(0.9))})
    return pd.DataFrame(out).set_index("variant")


def summary(rows: pd.DataFrame, label: str) -> dict[str, Any]:
    """Medians, the win fraction (diffbench at least as accurate) and evaluation totals."""
    # errors below 1e-16 are float64 rounding of the result itself: count them as equal
    ours = rows["diffbench"].fillna(np.inf).clip(lower=1e-16)
    theirs = rows["numdifftools"].fillna(np.inf).clip(lower=1e-16)
    out = {"what": label, "cases": len(rows),
           "median error diffbench": f"{rows['diffbench'].median():.2g}",
           "median error numdifftools": f"{rows['numdifftools'].median():.2g}",
           "diffbench at least as accurate": f"{(ours <= theirs).mean():.0%}",
           "evaluations diffbench": int(rows["evals_diffbench"].sum()),
           "evaluations numdifftools": int(rows["evals_numdifftools"].sum()),
           "evaluation ratio": f"{rows['evals_diffbench'].sum() / rows['evals_numdifftools'].sum():.2f}"}
    if "estimate" in rows:
        out["error_estimate ≥ true error"] = f"{(rows['estimate'] >= rows['diffbench']).mean():.0%}"
    return out


def main(argv: list[str] | None = None) -> int:
    """Run both halves and print the per-case tables and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print markdown tables (for RESULTS.md)")
    parser.add_argument("--library", nargs="?", const="", metavar="RESULTS_CSV",
                        help="only the error estimates' coverage over the library: of a run's results.csv, or "
                             "of a run made here")
    args = parser.parse_args(argv)
    show = (lambda df: df.to_markdown()) if args.markdown else (lambda df: df.to_string())
    if args.library is not None:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = coverage(library_rows(pd.read_csv(args.library) if args.library else None))
        for column in ("coverage", "coverage of finite estimates"):
            table[column] = table[column].map(lambda v: f"{v:.1%}")
        for column in ("median estimate/true", "p90 estimate/true"):
            table[column] = table[column].map(lambda v: f"{v:.3g}")
        print(show(table))
        return 0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grad = pd.DataFrame(gradient_rows())
        hess = pd.DataFrame(hessian_rows())
    table = pd.DataFrame([summary(grad, "gradient"), summary(hess, "Hessian")]).set_index("what").T.fillna("")
    print(show(table))
    for rows in (grad, hess):
        rows = rows.set_index("case")
        for column in ("diffbench", "numdifftools", "estimate"):
            if column in rows:
                rows[column] = rows[column].map(lambda v: f"{v:.2g}")
        print()
        print(show(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
