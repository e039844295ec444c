"""Results table -> report.md, results.csv and plots. Never re-runs anything.

Everything here reads the tidy DataFrame (or the CSV it was saved as), so a report can
be regenerated from ``results.csv`` alone: ``python -m diffbench report results.csv``.
The machine's facts travel in ``env_*`` columns of the same CSV.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import re
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .case import matches
from .engines.finite import step_scale
from .results import COLUMNS, STATUSES, SWEEP, Status, atomic_write, measurements, sweep_points, without_sweep
from .metrics import is_exact
from .timing import resolution

ENV_PREFIX = "env_"
STATUS_ORDER = list(STATUSES)


# --------------------------------------------------------------------------- environment
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit(where: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=5)
        # the reports being (re)written are not changes to what produced them
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports"],
                               cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def environment(gpus: list[str] | None, profile: str, where: Path | None = None) -> dict[str, str]:
    """Facts about this machine and run, for the report header (``env_*`` columns)."""
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": _git_commit(where or Path(__file__).resolve().parent.parent),
        "python": platform.python_version(),
        "tensorflow": _version("tensorflow"),
        "sympy": _version("sympy"),
        "numpy": _version("numpy"),
        "mpmath": _version("mpmath"),
        "jax": _version("jax"),
        "torch": _version("torch"),
        "cpu": f"{_cpu_model()} ({os.cpu_count()} cores)",
        "gpu": ", ".join(gpus) if gpus else "no GPU",
        "profile": profile,
        "timer_resolution_s": f"{resolution():.1e}",
    }


def with_environment(df: pd.DataFrame, env: dict[str, str]) -> pd.DataFrame:
    out = df.copy()
    for key, value in env.items():
        out[ENV_PREFIX + key] = value
    return out


def environment_of(df: pd.DataFrame) -> dict[str, str]:
    if df.empty:
        return {}
    first = df.iloc[0]
    return {c[len(ENV_PREFIX):]: str(first[c]) for c in df.columns if c.startswith(ENV_PREFIX)}


# --------------------------------------------------------------------------- formatting
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#<>])")


def md(text: Any) -> str:
    """Escape text for a markdown table cell or list item (markdown and HTML characters)."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    escaped = _MD_SPECIAL.sub(lambda m: {"<": "&lt;", ">": "&gt;"}.get(m.group(1), "\\" + m.group(1)), str(text))
    return escaped.replace("\n", " ")


def _num(value: Any, digits: int = 2) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    if math.isnan(v):
        return ""
    if v == 0:
        return "0"
    return f"{v:.{digits}g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.{digits - 1}e}"


def format_seconds(seconds: Any) -> str:
    """``seconds`` with a unit that keeps three significant digits (``1.23 ms``); empty for a missing value."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return ""
    if math.isnan(s):
        return ""
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def _label(row: pd.Series) -> str:
    return f"{row['method']}/{row['variant']}"


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a results.csv written by diffbench (raises ValueError if it is not one)."""
    header = pd.read_csv(path, nrows=0).columns
    # the machine's facts are text ("1.0e-09", a commit hash of digits): keep them as written
    # and a status of "nan" is a word, not a missing value: only empty cells are missing
    df = pd.read_csv(path, dtype={c: str for c in header if c.startswith(ENV_PREFIX)}, keep_default_na=False,
                     na_values=[""])
    missing = [c for c in ("case", "method", "variant", "dtype", "status") if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not a diffbench results file: columns {missing} are missing")
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = np.nan
    return df


# --------------------------------------------------------------------------- tables
def _case_by_label(table: pd.DataFrame, cases: list[str], labels: list[str]) -> str:
    """A markdown table: one row per case, one column per label (both in the given order), ``cell`` inside."""
    pivot = table.pivot_table(index="case", columns="label", values="cell", aggfunc="first", sort=False)
    pivot = pivot.reindex(index=[c for c in cases if c in pivot.index],
                          columns=[c for c in labels if c in pivot.columns])
    pivot.index = [md(i) for i in pivot.index]
    # within one method's table the method is in the heading: the columns name the variant (and device)
    pivot.columns = [md(c.split("/", 1)[1]) for c in pivot.columns]
    return pivot.fillna("").to_markdown()


def _by_method(part: pd.DataFrame, cases: list[str], labels: list[str], heading: str) -> list[str]:
    """One table per method (so that lines stay short), rows and columns in the report's order."""
    out = []
    for method in dict.fromkeys(label.split("/", 1)[0] for label in labels):
        mine = part[part["method"] == method]
        if mine.empty:
            continue
        out += [f"### {heading}: {md(method)}", "",
                _case_by_label(mine, cases, [lab for lab in labels if lab.split("/", 1)[0] == method]), ""]
    return out


def _accuracy_cell(r: pd.Series) -> str:
    if r["status"] in (Status.OK, Status.INACCURATE, Status.UNDEFINED, Status.UNCERTAIN):
        return f"{r['status']} {_num(r['rel_error'])}".strip()
    return str(r["status"])


def _accuracy_tables(df: pd.DataFrame, dtype: str, cases: list[str], labels: list[str]) -> list[str]:
    part = _first_order(df)
    part = part[part["dtype"] == dtype]
    if part.empty:
        return []
    return _by_method(part.assign(cell=part.apply(_accuracy_cell, axis=1)), cases, labels, f"Accuracy, {dtype}")


def _runtime_tables(df: pd.DataFrame, dtype: str, cases: list[str], labels: list[str]) -> list[str]:
    part = _first_order(df)
    part = part[(part["dtype"] == dtype) & part["time_median_s"].notna()]
    if part.empty:
        return []

    def cell(r: pd.Series) -> str:
        text = format_seconds(r["time_median_s"])
        if pd.notna(r.get("grad_over_f")):
            text += f" ({float(r['grad_over_f']):.3g}×)"
        if str(r.get("unstable")) in ("True", "true", "1"):
            text += " ~"
        return text

    # a GPU row gets a column of its own next to its CPU twin
    label = part["label"] + np.where(part["device"] == "CPU", "", " " + part["device"].astype(str))
    order = [lab + extra for lab in labels for extra in [""] + sorted({" " + str(d) for d in part["device"]
                                                                     if d != "CPU"})]
    return _by_method(part.assign(label=label, cell=part.apply(cell, axis=1)), cases, order, f"Runtime, {dtype}")


def _hessian_table(df: pd.DataFrame, cases: list[str]) -> str:
    part = df[df["order"] == 2]
    if part.empty:
        return ""
    table = part.assign(label=part["method"] + "/" + part["dtype"], cell=part.apply(_accuracy_cell, axis=1))
    labels = [f"{m}/{d}" for m in dict.fromkeys(part["method"]) for d in ("float32", "float64")]
    pivot = table.pivot_table(index="case", columns="label", values="cell", aggfunc="first", sort=False)
    pivot = pivot.reindex(index=[c for c in cases if c in pivot.index], columns=[c for c in labels if c in pivot.columns])
    pivot.index = [md(i) for i in pivot.index]
    pivot.columns = [md(c.replace("/", " ")) for c in pivot.columns]
    return pivot.fillna("").to_markdown()


def _summary_table(df: pd.DataFrame, labels: list[str]) -> str:
    table = _first_order(df)
    counts = table.assign(label=table["label"] + " " + table["dtype"]).pivot_table(
        index="label", columns="status", values="case", aggfunc="count", fill_value=0, sort=False)
    order = [f"{lab} {d}" for lab in labels for d in ("float32", "float64")]
    counts = counts.reindex(index=[i for i in order if i in counts.index],
                            columns=[s for s in STATUS_ORDER if s in counts.columns])
    counts.index = [md(i) for i in counts.index]
    return counts.to_markdown()


def _where(rows: pd.DataFrame) -> str:
    """The rows of a group, compactly: each case with the variants, dtypes and orders it covers."""
    parts = []
    for case_name, mine in rows.groupby("case", sort=False):
        what = ", ".join(dict.fromkeys(f"{r['variant']} {str(r['dtype']).replace('float', 'f')}"
                                       + (" order 2" if r["order"] == 2 else "") for _, r in mine.iterrows()))
        parts.append(f"{md(case_name)} ({md(what)})")
    shown = parts[:6]
    return "; ".join(shown) + (f"; and {len(parts) - 6} more cases" if len(parts) > 6 else "")


def _problems(df: pd.DataFrame) -> str:
    """Non-ok rows grouped by status, method and diagnosis up to its numbers: one entry per group with its
    rows' places and the diagnosis, in full where every row of the group has the same text, otherwise with
    the numbers that differ left out (each row's own text is in results.csv)."""
    bad = df[df["status"] != Status.OK]
    if bad.empty:
        return "Every row is `ok`.\n"
    text = bad["diagnosis"].map(lambda d: "" if d is None or (isinstance(d, float) and math.isnan(d)) else str(d))
    bad = bad.assign(text=text, shape=text.map(lambda t: _NUMBER.sub("#", t)),
                     rank=bad["status"].map(lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else 99))
    lines = []
    for (_, status, method, shape), rows in bad.groupby(["rank", "status", "method", "shape"], sort=True):
        n_cases = rows["case"].nunique()
        lines.append(f"- `{status}` · {md(method)} · {len(rows)} row{'s' * (len(rows) != 1)} in {n_cases} "
                     f"case{'s' * (n_cases != 1)}: {_where(rows)}")
        texts = set(rows["text"])
        if len(texts) == 1:
            said = next(iter(texts)) or "no diagnosis"
        else:
            said = shape.replace("#", "…") + " (the numbers differ from row to row; results.csv has each row's)"
        lines.append(f"  - {md(said)}")
    return "\n".join(lines) + "\n"


def _expected_mismatches(df: pd.DataFrame) -> pd.DataFrame:
    if "expected" not in df.columns:
        return df.iloc[0:0]
    mismatch = [not matches(str(st), str(ex)) for st, ex in zip(df["status"], df["expected"])]
    return df[df["expected"].notna() & pd.Series(mismatch, index=df.index) & (df["method"] != SWEEP)]


def _mismatch_lines(mismatches: pd.DataFrame) -> list[str]:
    """Rows whose status differs from what their case expects, one line per case, expectation and status."""
    lines = []
    for (case_name, expected, status), rows in mismatches.groupby(["case", "expected", "status"], sort=False):
        methods = ", ".join(f"{md(m)} ×{n}" for m, n in rows["method"].value_counts(sort=False).items())
        lines.append(f"- {md(case_name)}: expected `{expected}`, got `{status}` in {len(rows)} "
                     f"row{'s' * (len(rows) != 1)} ({methods})")
    return lines


# --------------------------------------------------------------------------- first screen
#: correct digits are drawn and summarised within [0, DIGITS_MAX]: float64 resolves 15.7 digits, so 16 reads
#: "as exact as float64 can be"
DIGITS_MAX = 16.0
#: one-character marks for the statuses on the accuracy heatmap (ok has none)
STATUS_MARKS = {"inaccurate": "x", "nan": "N", "inf": "I", "none": "0", "error": "E", "timeout": "T",
                "skipped": "S", "undefined": "U", "uncertain": "?"}
#: the statuses a headline counts by cause; ``inaccurate`` and ``skipped`` are counted only (the tables and the
#: grouped diagnoses say why)
BY_CAUSE = ["nan", "inf", "none", "error", "timeout", "undefined", "uncertain"]
_NUMBER = re.compile(r"(?<![A-Za-z_\d])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_BRACKETED = re.compile(r"`[^`]*`|\[[^\]]*\]")


def correct_digits(rel_error: Any) -> float:
    """−log10 of a relative error, clipped to [0, DIGITS_MAX] (an error of 0 gives DIGITS_MAX); NaN when there is
    no error to read (a row without a finite gradient)."""
    try:
        err = float(rel_error)
    except (TypeError, ValueError):
        return math.nan
    if math.isnan(err):
        return math.nan
    if err <= 0:
        return DIGITS_MAX
    return min(DIGITS_MAX, max(0.0, -math.log10(err)))


def cause_of(diagnosis: Any) -> str:
    """A diagnosis reduced to its cause for grouping rows on screen: its first clause with numbers, code and
    bracketed values left out (never used to decide anything)."""
    text = "" if diagnosis is None or (isinstance(diagnosis, float) and math.isnan(diagnosis)) else str(diagnosis)
    text = _NUMBER.sub("#", _BRACKETED.sub("…", text))
    cut = re.search(r"[:;]", text[20:])
    text = text[:20 + cut.start()] if cut else text
    text = text.strip(" .")
    return (text[:77] + "…" if len(text) > 80 else text) or "no diagnosis"


def family_of(tags: Any) -> str:
    """A case's family: its first tag (the library tags each case with its file's family), or ``untagged``."""
    if tags is None or (isinstance(tags, float) and math.isnan(tags)):
        return "untagged"
    first = str(tags).split(",")[0].strip()
    return first or "untagged"


def measurements(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that are measurements (the step-sweep points left out)."""
    return without_sweep(df)


def label_order(df: pd.DataFrame) -> list[str]:
    """``method/variant`` labels, methods in first-seen order and each method's variants in first-seen order,
    so that every table and figure of a report lists them alike."""
    main = measurements(df)
    variants: dict[str, list[str]] = {}
    for method, variant in zip(main["method"], main["variant"]):
        variants.setdefault(str(method), [])
        if str(variant) not in variants[str(method)]:
            variants[str(method)].append(str(variant))
    return [f"{m}/{v}" for m, vs in variants.items() for v in vs]


def _case_order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(str(c) for c in measurements(df)["case"]))


def _first_order(df: pd.DataFrame) -> pd.DataFrame:
    part = measurements(df)
    part = part[part["order"] == 1]
    return part.assign(label=part["method"].astype(str) + "/" + part["variant"].astype(str))


def _exact(method: Any, variant: Any) -> bool:
    return is_exact(str(method), str(variant))


def _headline(df: pd.DataFrame) -> list[str]:
    """One bullet per case family: digits per method, the fastest exact method, non-ok rows by cause."""
    main = measurements(df)
    family = main.groupby("case", sort=False)["tags"].first().map(family_of)
    first = _first_order(main)
    lines = []
    for name in dict.fromkeys(family):
        cases = family.index[family == name]
        rows = first[first["case"].isin(cases)]
        everything = main[main["case"].isin(cases)]
        text = f"- **{md(name)}** ({len(cases)} case{'s' * (len(cases) != 1)}) — "
        text += _digits_phrase(rows) + "; " + _fastest_phrase(rows)
        lines.append(text)
        lines.append("  - " + _not_ok_phrase(everything))
    return lines


def _digits_phrase(rows: pd.DataFrame) -> str:
    judged = rows[rows["status"].isin([Status.OK, Status.INACCURATE])]
    if judged.empty:
        return "no gradient could be judged"
    parts = []
    for method in dict.fromkeys(judged["method"]):
        per = []
        for dtype in ("float64", "float32"):
            values = judged[(judged["method"] == method) & (judged["dtype"] == dtype)]["rel_error"].map(correct_digits)
            if values.notna().any():
                per.append(f"{values.min():.0f}–{values.median():.0f}" if dtype == "float64" else f"{values.median():.0f}")
        parts.append(f"{md(method)} {' / '.join(per)}")
    return "correct digits, float64 worst–median / float32 median: " + ", ".join(parts)


def _fastest_phrase(rows: pd.DataFrame) -> str:
    exact = pd.Series([_exact(m, v) for m, v in zip(rows["method"], rows["variant"])], index=rows.index, dtype=bool)
    timed = rows[(rows["status"] == Status.OK) & rows["time_median_s"].notna() & (rows["device"] == "CPU") & exact]
    dtype = "float64" if (timed["dtype"] == "float64").any() else "float32"
    timed = timed[timed["dtype"] == dtype]
    if timed.empty:
        return "no exact method was timed ok"
    winners = timed.loc[timed.groupby("case", sort=False)["time_median_s"].idxmin(), "label"]
    best = winners.value_counts().index[0]
    ratio = timed[timed["label"] == best]["grad_over_f"].astype(float).median()
    ratio_text = f", grad/f {ratio:.2g}" if not math.isnan(ratio) else ""
    return f"fastest exact: {md(best)} ({int((winners == best).sum())} of {len(winners)} cases{ratio_text})"


def _not_ok_phrase(rows: pd.DataFrame) -> str:
    bad = rows[rows["status"] != Status.OK]
    if bad.empty:
        return "every row ok"
    parts = []
    for status in [s for s in STATUS_ORDER if s in set(bad["status"]) and s != Status.OK]:
        of = bad[bad["status"] == status]
        if status not in BY_CAUSE:
            parts.append(f"`{status}` {len(of)}")
            continue
        causes = of["diagnosis"].map(cause_of).value_counts()
        shown = "; ".join(f"{n}× {md(_short(c))}" for c, n in causes.head(2).items())
        more = f"; {int(causes.iloc[2:].sum())}× other" if len(causes) > 2 else ""
        parts.append(f"`{status}` {len(of)} ({shown}{more})")
    orders = "orders 1 and 2" if (rows["order"] == 2).any() else "order 1"
    return f"not ok ({orders}): " + ", ".join(parts)


def _short(cause: str, limit: int = 60) -> str:
    return cause if len(cause) <= limit else cause[:limit - 1].rstrip() + "…"


def row_counts(df: pd.DataFrame) -> str:
    """The one sentence that counts a results table's rows, printed alike by the console and the report."""
    main = measurements(df)
    sweep = len(df) - len(main)
    n_cases = main["case"].nunique()
    text = f"{len(df)} rows: {len(main)} measurements of {n_cases} case{'s' * (n_cases != 1)}"
    return text + (f" and {sweep} step-sweep points" if sweep else "")


# --------------------------------------------------------------------------- first-screen plots
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_heatmap(df: pd.DataFrame, path: Path) -> Path | None:
    """Cases × methods, one panel per dtype (order 1): colour = correct digits, a letter for each non-ok status.

    Returns the PNG's path, or None when there is nothing to draw.
    """
    first = _first_order(df)
    if first.empty:
        return None
    plt = _pyplot()
    cases, labels = _case_order(first), label_order(first)
    dtypes = [d for d in ("float32", "float64") if d in set(first["dtype"])] or sorted(set(first["dtype"]))
    height = 1.6 + 0.22 * len(cases)
    fig, axes = plt.subplots(1, len(dtypes), figsize=(2.2 + 0.45 * len(labels) * len(dtypes), height),
                             squeeze=False, sharey=True)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    image = None
    for ax, dtype in zip(axes[0], dtypes):
        part = first[first["dtype"] == dtype]
        cells = part.drop_duplicates(["case", "label"]).set_index(["case", "label"])
        grid = np.full((len(cases), len(labels)), np.nan)
        for i, name in enumerate(cases):
            for j, label in enumerate(labels):
                if (name, label) not in cells.index:
                    continue
                row = cells.loc[(name, label)]
                # undefined and uncertain rows have no truth to count digits against: grey, with their mark
                if row["status"] in (Status.OK, Status.INACCURATE):
                    grid[i, j] = correct_digits(row["rel_error"])
                mark = STATUS_MARKS.get(str(row["status"]), "")
                if mark:
                    ax.text(j, i, mark, ha="center", va="center", fontsize=7,
                            color="white" if not np.isnan(grid[i, j]) and grid[i, j] < 9 else "black")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=DIGITS_MAX, aspect="auto",
                          interpolation="nearest")
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(cases)), cases, fontsize=7)
        ax.set_title(dtype, fontsize=9)
    legend = "  ".join(f"{mark} {status}" for status, mark in STATUS_MARKS.items())
    fig.suptitle(f"Correct digits, −log10(relative error) (grey: no gradient or no truth)\n{legend}", fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, pad=0.02, label="correct digits")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def cost_plot(df: pd.DataFrame, path: Path) -> Path | None:
    """grad/f of every timed order-1 CPU row, one line per method (log scale), a dot per case and dtype and a bar
    at the median. Returns the PNG's path, or None when no row has a grad/f."""
    first = _first_order(df)
    first = first[first["grad_over_f"].notna() & (first["device"] == "CPU")]
    if first.empty:
        return None
    plt = _pyplot()
    labels = label_order(first)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.32 * len(labels)))
    for offset, dtype, colour in ((-0.15, "float32", "tab:orange"), (0.15, "float64", "tab:blue")):
        part = first[first["dtype"] == dtype]
        if part.empty:
            continue
        for j, label in enumerate(labels):
            values = part[part["label"] == label]["grad_over_f"].astype(float)
            values = values[values > 0]
            if values.empty:
                continue
            ax.scatter(values, np.full(len(values), j + offset), s=8, alpha=0.5, color=colour,
                       label=dtype if j == 0 else None)
            ax.scatter([values.median()], [j + offset], marker="|", s=200, color="black")
    ax.set_xscale("log")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("grad/f: time of one gradient over one evaluation of f (| = median over cases)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- plots
def sweep_plots(df: pd.DataFrame, plot_dir: Path) -> list[Path]:
    """One PNG per dtype: finite-difference error against step for each swept case and scheme."""
    sweep = sweep_points(df)
    if sweep.empty:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dtype, part in sweep.groupby("dtype"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        part = part.assign(scheme=part["variant"].str.rsplit("-", n=1).str[0])
        for (case_name, scheme), curve in part.groupby(["case", "scheme"]):
            curve = curve.sort_values("step")
            errs = curve["rel_error"].astype(float).clip(lower=1e-17)
            line, = ax.loglog(curve["step"].astype(float), errs, marker=".", label=f"{case_name} {scheme}")
            chosen = step_scale(scheme, str(dtype))
            nearest = curve.iloc[(curve["step"].astype(float) - chosen).abs().argsort()[:1]]
            ax.scatter([chosen], [max(float(nearest["rel_error"].iloc[0]), 1e-17)], color=line.get_color(),
                       marker="o", s=60, edgecolors="black", zorder=3)
        ax.set_xlabel("relative step c (h = c·max(|x|, 1))")
        ax.set_ylabel("relative error of the gradient")
        ax.set_title(f"Finite differences in {dtype}: truncation vs rounding (circle = chosen step)")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, which="both", alpha=0.3)
        path = plot_dir / f"step_sweep_{dtype}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------- report
#: the first-screen figures, relative to the report's folder
HEATMAP_PNG = "plots/accuracy.png"
COST_PNG = "plots/cost.png"


# --------------------------------------------------------------------------- scaling
#: a size's time has left the fixed-overhead floor when it is at least this many times the time at the
#: smallest size measured: the overhead is then at most a third of it, and the slope measures growth
FLOOR_FACTOR = 3.0


def slopes(df: pd.DataFrame, column: str = "time_median_s") -> pd.DataFrame:
    """Least-squares slope of log(column) against log(n) per method/variant/device, fitted only over the
    sizes whose time has left the fixed-overhead floor (at least ``FLOOR_FACTOR`` times the time at the
    smallest size): below it the time is overhead and its slope (near 0) says nothing about growth.
    ``sizes`` names the sizes fitted; ``floor`` those left out. With fewer than 2 sizes above the
    floor the slope is NaN and ``floor`` says so."""
    out = []
    for (method, variant, device), part in df[df["status"] == Status.OK].groupby(["method", "variant", "device"]):
        part = part[part[column].notna() & (part[column] > 0)].sort_values("n")
        if part["n"].nunique() < 2:
            continue
        base = float(part[column].iloc[0])
        above = part[part[column] >= FLOOR_FACTOR * base]
        below = part[part[column] < FLOOR_FACTOR * base]
        floor = ", ".join(str(int(n)) for n in below["n"])
        if above["n"].nunique() < 2:
            past = ", ".join(str(int(n)) for n in above["n"])
            out.append(dict(method=method, variant=variant, device=device, slope=math.nan,
                            sizes=f"only {past} past the floor: no slope" if past else "none past the floor",
                            floor=floor))
            continue
        slope = np.polyfit(np.log(above["n"].astype(float)), np.log(above[column].astype(float)), 1)[0]
        out.append(dict(method=method, variant=variant, device=device, slope=float(slope),
                        sizes=", ".join(str(int(n)) for n in above["n"]), floor=floor))
    return pd.DataFrame(out, columns=["method", "variant", "device", "slope", "sizes", "floor"])


def scaling_section(df: pd.DataFrame) -> str:
    """The default report's small scaling section from a scaling study's rows: median gradient time by n, and slopes."""
    if "n" not in df.columns or df["n"].isna().all():
        return "## Scaling\n\nThe scaling study did not run: " + md(" ".join(map(str, df.get("diagnosis", []))))
    name = str(df["case"].iloc[0])
    table = df.assign(label=df["method"] + "/" + df["variant"],
                      cell=df.apply(lambda r: format_seconds(r["time_median_s"]) if r["status"] == Status.OK else r["status"],
                                    axis=1))
    pivot = table.pivot_table(index="n", columns="label", values="cell", aggfunc="first", sort=False)
    slope_table = slopes(df)
    lines = [f"## Scaling ({md(name)}, float64, CPU)", "",
             "Median seconds per gradient against problem size n (`skipped` once a variant's small budget is spent; "
             f"the full study: `python -m diffbench scale {md(name)}`):", "", pivot.fillna("").to_markdown()]
    if len(slope_table):
        lines += ["", f"Log-log slopes of time against n, fitted over the sizes (`sizes`) whose time is at least "
                      f"{FLOOR_FACTOR:g}× that of the smallest size; `floor` lists the sizes left out, where fixed "
                      "overhead dominates:", "",
                  slope_table.drop(columns=["device"]).to_markdown(index=False, floatfmt=".2f")]
    return "\n".join(lines)


def render(df: pd.DataFrame, plots: list[str] | None = None, title: str = "diffbench report",
           scale: pd.DataFrame | None = None, figures: dict[str, str] | None = None) -> str:
    """The markdown report for a results table (and, optionally, a small scaling study's table).

    The first screen holds the row counts, a headline per case family and the figures named in ``figures``
    (``accuracy`` and ``cost``: paths relative to the report); the long tables, grouped diagnoses and the
    environment follow. ``plots`` are the step-sweep figures.
    """
    env = environment_of(df)
    main = measurements(df)
    cases, labels = _case_order(main), label_order(main)
    figures = figures or {}
    out = [f"# {md(title)}", ""]
    facts = ", ".join(md(env[k]) for k in ("date", "commit") if k in env)
    out.append(f"{row_counts(df)}{f' ({facts})' if facts else ''}. `rel_error` is the true error against a "
               "certified high-precision reference; columns and statuses: reports/README.md.")
    mismatches = _expected_mismatches(main)
    differ = f"{len(mismatches)} rows differ" if len(mismatches) != 1 else "1 row differs"
    out += ["", f"**{differ} from the status their case expects** (listed below)."
            if len(mismatches) else "Every row has the status its case expects (column `expected`).", ""]
    out += ["## Headline (per case family)", ""] + _headline(main) + [""]
    if "accuracy" in figures:
        out.append(f"![accuracy: correct digits per case and method]({figures['accuracy']})")
    if "cost" in figures:
        out.append(f"![cost: grad/f per method]({figures['cost']})")
    out += ["", "## Summary (order-1 rows per status)", "", _summary_table(main, labels), ""]
    if len(mismatches):
        out += ["## Rows that differ from what their case expects", ""] + _mismatch_lines(mismatches) + [""]
    dtypes = [d for d in ("float32", "float64") if d in set(main["dtype"])]
    for dtype in dtypes:
        out += [f"## Accuracy, {dtype} (status and relative error against the reference)", ""]
        out += _accuracy_tables(main, dtype, cases, labels)
    for dtype in dtypes:
        tables = _runtime_tables(main, dtype, cases, labels)
        if tables:
            out += [f"## Runtime, {dtype} (median per gradient; in brackets grad/f, the cost of the gradient over "
                    "one evaluation of the function; ~ marks an unstable measurement)", ""] + tables
    hess = _hessian_table(main, cases)
    if hess:
        out += ["## Second derivatives (Hessians; status and relative error)", "", hess, ""]
    if scale is not None and len(scale):
        out += [scaling_section(scale), ""]
    if plots:
        out += ["## Finite-difference step sweep", "",
                "Error against the relative step c for forward and central differences: truncation error falls "
                "as the step shrinks until rounding error takes over (the V). The circle marks the step diffbench "
                "chooses.", ""]
        out += [f"![{md(Path(p).stem)}]({p})" for p in plots] + [""]
    out += ["## Rows that are not ok, grouped by status, method and cause", "", _problems(main)]
    if env:
        out += ["## Environment", "", "| | |\n|---|---|"]
        for key in ("date", "commit", "python", "tensorflow", "sympy", "numpy", "mpmath", "cpu", "gpu", "profile",
                    "timer_resolution_s"):
            if key in env:
                out.append(f"| {key} | {md(env[key])} |")
        for key in ("jax", "torch"):
            if env.get(key, "not installed") != "not installed":
                out.append(f"| {key} | {md(env[key])} |")
        out.append("")
    return "\n".join(out)


def _figures(df: pd.DataFrame, out: Path) -> dict[str, str]:
    """Draw the first screen's figures into ``out``/plots; return their paths relative to ``out``."""
    figures = {}
    if accuracy_heatmap(df, out / HEATMAP_PNG) is not None:
        figures["accuracy"] = HEATMAP_PNG
    if cost_plot(df, out / COST_PNG) is not None:
        figures["cost"] = COST_PNG
    return figures


def _for_csv(df: pd.DataFrame) -> pd.DataFrame:
    """The table as results.csv holds it: timing samples as one cell of space-separated seconds."""
    if "time_samples_s" not in df.columns:
        return df
    return df.assign(time_samples_s=df["time_samples_s"].map(format_samples))


def format_samples(samples: Any) -> Any:
    """Timing samples (a list, or text already) as space-separated seconds; None/NaN stays empty."""
    if isinstance(samples, (list, tuple, np.ndarray)):
        return " ".join(f"{float(s):.6g}" for s in samples) or None
    return samples


def parse_samples(cell: Any) -> list[float]:
    """The timing samples of a results cell (space-separated text or a list); empty when there are none."""
    if isinstance(cell, (list, tuple, np.ndarray)):
        return [float(s) for s in cell]
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return []
    return [float(s) for s in str(cell).split()]


def write(df: pd.DataFrame, out_dir: str | Path, title: str = "diffbench report",
          scale: pd.DataFrame | None = None) -> Path:
    """Write results.csv (and scale.csv), plots/ and report.md into ``out_dir`` (each atomically);
    return report.md's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.csv", _for_csv(df).to_csv(index=False))
    if scale is not None and len(scale):
        atomic_write(out / "scale.csv", scale.to_csv(index=False))
    plots = [str(p.relative_to(out)) for p in sweep_plots(df, out / "plots")]
    report = out / "report.md"
    atomic_write(report, render(df, plots, title, scale, _figures(df, out)))
    return report


def regenerate(results_csv: str | Path, out_dir: str | Path | None = None) -> Path:
    """Rebuild report.md (and plots) from a results.csv (and the scale.csv beside it, if any);
    return report.md's path."""
    df = read_results(results_csv)
    out = Path(out_dir) if out_dir else Path(results_csv).parent
    out.mkdir(parents=True, exist_ok=True)
    scale_csv = Path(results_csv).parent / "scale.csv"
    scale = pd.read_csv(scale_csv, keep_default_na=False, na_values=[""]) if scale_csv.exists() else None
    plots = [str(p.relative_to(out)) for p in sweep_plots(df, out / "plots")]
    report = out / "report.md"
    atomic_write(report, render(df, plots, scale=scale, figures=_figures(df, out)))
    return report
