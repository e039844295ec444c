"""Scaling study: how preparation and gradient time grow with problem size.

``python -m diffbench scale CASE --sizes 10,100,1000`` runs every method and variant
on a size-parameterised case (``@case(sizes=lambda n: {...})``) at each size, until a
method's time budget is spent (larger sizes are then ``skipped``, said so in the
row). It records preparation and evaluation time, for symbolic the expression size
of the gradient with and without CSE, fits log-log slopes, and writes scale.csv,
report.md and PNG plots.

Accuracy at large n has no 50-digit reference (its cost grows as n²); each gradient
is instead cross-checked against the float64 ``tape/function`` gradient at the same
size (column ``reference`` says so).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .case import Case
from .errors import UsageError
from .paths import inside, slug
from .report import atomic_write, format_seconds, md, plain_text_plots, scaling_section, slopes
from .results import Status, for_csv

#: the default report's scaling section is the report's (with :func:`slopes`); kept here under its old name
section = scaling_section

SCALE_COLUMNS = ["case", "n", "method", "variant", "dtype", "device", "status", "prepare_s", "time_median_s",
                 "time_iqr_s", "f_time_s", "grad_over_f", "expr_ops", "grad_ops_cse", "grad_ops_nocse", "rel_error",
                 "reference", "diagnosis"]


def study(case: Any, sizes: list[int], methods: list[str], dtype: str = "float64", budget_s: float = 20.0,
          profile: str = "quick", progress: Callable[[str], None] | None = None,
          variants: dict[str, tuple[str, ...]] | None = None) -> pd.DataFrame:
    """Measure ``case`` at each size with each method/variant (``variants`` narrows a method's
    list); return the scaling table."""
    from .engines import Skip, flatten, get_engine
    from .engines import symbolic as symbolic_engine
    from .timing import PROFILES, measure

    rows = []
    spent: dict[tuple[str, str, str], float] = {}
    history: dict[tuple[str, str, str], list[tuple[int, float]]] = {}  # (n, seconds for that size)
    for n in sizes:
        sized = case.at_size(n)
        if sized.problem:
            raise ValueError(sized.problem)
        check = None
        try:
            check = flatten(get_engine("tape").prepare(sized, "function", "float64", "CPU").gradient(), list(sized.inputs))
        except Exception:  # noqa: BLE001 - then rows say the cross-check is unavailable
            check = None
        for method in methods:
            try:
                engine = get_engine(method)
            except ImportError as exc:
                rows.append(dict(case=case.name, n=n, method=method, variant="-", dtype=dtype, device="CPU",
                                 status="skipped", diagnosis=f"{method} is not installed ({exc})"))
                continue
            for variant in (variants or {}).get(method) or (engine.info.scaling_variants or engine.variants()):
                for device in engine.devices():
                    key = (method, variant, device)
                    row: dict[str, Any] = dict(case=case.name, n=n, method=method, variant=variant, dtype=dtype,
                                               device=device, reference="tape/function float64 cross-check")
                    predicted = _predict(history.get(key, []), n)
                    if spent.get(key, 0.0) + predicted > budget_s:
                        row.update(status=Status.SKIPPED, diagnosis=(
                            f"smaller sizes took {spent.get(key, 0.0):.1f} s and this size would take about "
                            f"{predicted:.0f} s more, over the budget of {budget_s:g} s (--budget)"))
                        rows.append(row)
                        continue
                    if progress:
                        progress(f"n={n} {method}/{variant} {device}")
                    began = time.perf_counter()
                    try:
                        prepared = engine.prepare(sized, variant, dtype, device)
                        timing = measure(prepared.timed, PROFILES[profile])
                        f_timing = measure(prepared.f_timed, PROFILES[profile]) if prepared.f_timed else None
                        grad = flatten(prepared.gradient(), list(sized.inputs))
                        row.update(status=Status.OK, prepare_s=prepared.prepare_s, time_median_s=timing.median_s,
                                   time_iqr_s=timing.iqr_s)
                        if f_timing is not None:
                            row.update(f_time_s=f_timing.median_s, grad_over_f=timing.median_s / f_timing.median_s)
                        if check is not None:
                            norm = float(np.linalg.norm(check)) or 1.0
                            row["rel_error"] = float(np.linalg.norm(grad.astype(np.float64) - check)) / norm
                        if not np.all(np.isfinite(grad)):
                            row["status"] = "nan" if np.isnan(grad).any() else "inf"
                        if method == "symbolic":
                            row.update(symbolic_engine.scale_columns(sized, variant, prepared))
                    except Skip as exc:
                        row.update(status=Status.SKIPPED, diagnosis=str(exc))
                        spent[key] = math.inf
                    except Exception as exc:  # noqa: BLE001 - a failure at one size is a row
                        row.update(status="error", diagnosis=f"{type(exc).__name__}: {exc}")
                    # prepare_s includes work another variant may have cached (the SymPy trace and diff):
                    # charge it anyway, since it is what this variant costs on its own
                    took = max(time.perf_counter() - began, float(row.get("prepare_s") or 0.0))
                    spent[key] = spent.get(key, 0.0) + took
                    history.setdefault(key, []).append((n, took))
                    rows.append(row)
    return pd.DataFrame(rows, columns=SCALE_COLUMNS)


def _predict(history: list[tuple[int, float]], n: int) -> float:
    """Seconds the next size will take, extrapolated from the last sizes (growth exponent 1 to 3)."""
    if not history:
        return 0.0
    (n1, t1) = history[-1]
    exponent = 1.0
    if len(history) >= 2:
        (n0, t0) = history[-2]
        if t0 > 0 and t1 > 0 and n1 > n0:
            exponent = float(np.clip(np.log(t1 / t0) / np.log(n1 / n0), 1.0, 3.0))
    return t1 * (n / n1) ** exponent


def plots(df: pd.DataFrame, out: Path, name: str) -> list[Path]:
    """time-vs-n and expression-size-vs-n PNGs inside ``out``, named after :func:`diffbench.paths.slug` of
    ``name`` (a case name is the user's text: it never chooses the folder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    stem = slug(name)

    def loglog(curves: list[tuple[Any, Any, str]], ylabel: str, title: str, path: Path) -> Path:
        # the title holds the case's name: a "$" in it is text, not mathtext
        with plain_text_plots():
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for x, y, label in curves:
                ax.loglog(x, y, marker="o", label=label)
            ax.set_xlabel("n (problem size)")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(inside(out, path), dpi=90)
            plt.close(fig)
        return path

    ok = df[(df["status"] == Status.OK) & df["time_median_s"].notna()]
    curves = [(part.sort_values("n")["n"], part.sort_values("n")["time_median_s"],
               f"{method}/{variant}" + ("" if device == "CPU" else f" {device}"))
              for (method, variant, device), part in ok.groupby(["method", "variant", "device"])]
    written = [loglog(curves, "seconds per gradient (median)", f"{name}: gradient time against size",
                      out / f"{stem}_time.png")]
    sym = df[(df["method"] == "symbolic") & df["grad_ops_cse"].notna()].drop_duplicates("n").sort_values("n")
    if len(sym):
        written.append(loglog([(sym["n"], sym["expr_ops"], "function (count_ops)"),
                               (sym["n"], sym["grad_ops_nocse"], "gradient, no CSE"),
                               (sym["n"], sym["grad_ops_cse"], "gradient, with CSE")],
                              "operations (sympy.count_ops)", f"{name}: expression size against n",
                              out / f"{stem}_expression_size.png"))
    return written


def render(df: pd.DataFrame, slope_table: pd.DataFrame, images: list[str], name: str) -> str:
    """The markdown scaling report."""
    table = df.assign(label=df["method"] + "/" + df["variant"] + df["device"].map(lambda d: "" if d == "CPU" else f" {d}"),
                      cell=df.apply(lambda r: format_seconds(r["time_median_s"]) if r["status"] == Status.OK else r["status"],
                                    axis=1))
    pivot = table.pivot_table(index="n", columns="label", values="cell", aggfunc="first", sort=False)
    prep = table.assign(cell=df["prepare_s"].map(format_seconds)).pivot_table(index="n", columns="label",
                                                                              values="cell", aggfunc="first",
                                                                              sort=False)
    lines = [f"# Scaling of {md(name)}", "", "Median seconds per gradient by size n (float64, CPU unless a device "
             "is named):", "", pivot.fillna("").to_markdown(), "", "One-off preparation (symbolic diff + lambdify, "
             "tf.function trace, XLA compile):", "", prep.fillna("").to_markdown(), ""]
    if len(slope_table):
        lines += ["Log-log slopes of time against n (1 = linear, 2 = quadratic), fitted over the sizes (`sizes`) whose "
                  "time is at least 3× that of the smallest size; `floor` lists the sizes left out, where fixed "
                  "overhead dominates:", "",
                  slope_table.to_markdown(index=False, floatfmt=".2f"), ""]
    sym = df[(df["method"] == "symbolic") & df["grad_ops_cse"].notna()].drop_duplicates("n")
    if len(sym):
        lines += ["Expression size (sympy.count_ops):", "",
                  sym[["n", "expr_ops", "grad_ops_nocse", "grad_ops_cse"]].to_markdown(index=False), ""]
    notes = df[df["status"] != Status.OK].drop_duplicates(["method", "variant", "device"])
    if len(notes):
        lines += ["Not measured (the first size each variant missed, and why):", ""] + [
            f"- {r['method']}/{r['variant']} from n = {r['n']}: `{r['status']}` — {md(r['diagnosis'])}"
            for _, r in notes.iterrows()] + [""]
    lines += [f"![{md(Path(i).stem)}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def sized_case(cases: list[Case], name: str) -> Case:
    """The case called ``name`` among ``cases``, to be studied across sizes.

    Raises UsageError when there is no such case or it has no ``sizes=``.
    """
    by_name = {c.name: c for c in cases}
    if name not in by_name:
        sized = sorted(n for n, c in by_name.items() if c.sizes)
        raise UsageError(f"no case {name!r}; size-parameterised cases: {', '.join(sized)}")
    if by_name[name].sizes is None:
        raise UsageError(f"case {name!r} has no sizes=; give @case(sizes=lambda n: {{...}})")
    return by_name[name]


def write_study(case: Case, sizes: list[int], methods: list[str], out: Path, dtype: str = "float64",
                budget_s: float = 20.0, profile: str = "quick",
                progress: Callable[[str], None] | None = None) -> Path:
    """Run :func:`study` and write scale.csv, report.md and the plots into ``out``; return the report's path.

    The table is written before the plots are drawn, and a plot that fails is named in the report instead of
    losing it."""
    df = study(case, sizes, methods, dtype, budget_s, profile, progress=progress)
    slope_table = slopes(df)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "scale.csv", for_csv(df).to_csv(index=False))
    try:
        images = [str(p.relative_to(out)) for p in plots(df, out / "plots", case.name)]
        failed = ""
    except Exception as exc:  # noqa: BLE001 - the numbers matter more than their picture
        images, failed = [], f"\nThe plots could not be drawn ({type(exc).__name__}: {md(exc)}).\n"
    atomic_write(out / "report.md", render(df, slope_table, images, case.name) + failed)
    return out / "report.md"
