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

ENV_PREFIX = "env_"
STATUS_ORDER = ["ok", "inaccurate", "nan", "inf", "none", "error", "timeout", "skipped", "undefined", "uncertain"]


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
    from .timing import resolution

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


def _time(seconds: Any) -> str:
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
    from .harness import COLUMNS

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
def _case_by_label(table: pd.DataFrame) -> str:
    """A markdown table: one row per case, one column per label (in first-seen order), ``cell`` inside."""
    pivot = table.pivot_table(index="case", columns="label", values="cell", aggfunc="first", sort=False)
    pivot = pivot.reindex(columns=[c for c in dict.fromkeys(table["label"]) if c in pivot.columns])
    pivot.index = [md(i) for i in pivot.index]
    pivot.columns = [md(c) for c in pivot.columns]
    return pivot.fillna("").to_markdown()


def _accuracy_table(df: pd.DataFrame, dtype: str) -> str:
    part = df[(df["dtype"] == dtype) & (df["order"] == 1)]
    if part.empty:
        return ""
    cell = part.apply(lambda r: f"{r['status']} {_num(r['rel_error'])}".strip()
                      if r["status"] in ("ok", "inaccurate", "undefined", "uncertain") else r["status"], axis=1)
    return _case_by_label(part.assign(label=part.apply(_label, axis=1), cell=cell))


def _runtime_table(df: pd.DataFrame, dtype: str) -> str:
    part = df[(df["dtype"] == dtype) & (df["order"] == 1) & df["time_median_s"].notna()]
    if part.empty:
        return ""

    def cell(r: pd.Series) -> str:
        text = _time(r["time_median_s"])
        if pd.notna(r.get("grad_over_f")):
            text += f" ({float(r['grad_over_f']):.3g}×)"
        if str(r.get("unstable")) in ("True", "true", "1"):
            text += " ~"
        return text

    label = part.apply(lambda r: _label(r) + ("" if r["device"] == "CPU" else f" {r['device']}"), axis=1)
    return _case_by_label(part.assign(label=label, cell=part.apply(cell, axis=1)))


def _hessian_table(df: pd.DataFrame) -> str:
    part = df[df["order"] == 2]
    if part.empty:
        return ""
    cell = part.apply(lambda r: f"{r['status']} {_num(r['rel_error'])}".strip()
                      if r["status"] in ("ok", "inaccurate") else r["status"], axis=1)
    table = part.assign(label=part["method"] + " " + part["dtype"], cell=cell)
    pivot = table.pivot_table(index="case", columns="label", values="cell", aggfunc="first", sort=False)
    pivot.index = [md(i) for i in pivot.index]
    return pivot.fillna("").to_markdown()


def _summary_table(df: pd.DataFrame) -> str:
    counts = df.assign(label=df.apply(_label, axis=1)).pivot_table(
        index="label", columns="status", values="case", aggfunc="count", fill_value=0, sort=False)
    counts = counts.reindex(columns=[s for s in STATUS_ORDER if s in counts.columns])
    counts.index = [md(i) for i in counts.index]
    return counts.to_markdown()


def _problems(df: pd.DataFrame) -> str:
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return "Every row is `ok`.\n"
    lines = []
    for case_name, group in bad.groupby("case", sort=False):
        lines.append(f"- **{md(case_name)}**")
        for (status, diagnosis), rows in group.groupby(["status", "diagnosis"], sort=False, dropna=False):
            where = ", ".join(f"{r['method']}/{r['variant']} {r['dtype']}" + (" (2nd order)" if r["order"] == 2 else "")
                              for _, r in rows.iterrows())
            lines.append(f"  - `{status}` — {md(where)}: {md(diagnosis) or 'no diagnosis'}")
    return "\n".join(lines) + "\n"


def _expected_mismatches(df: pd.DataFrame) -> pd.DataFrame:
    if "expected" not in df.columns:
        return df.iloc[0:0]
    from .case import matches

    mismatch = [not matches(str(st), str(ex)) for st, ex in zip(df["status"], df["expected"])]
    return df[df["expected"].notna() & pd.Series(mismatch, index=df.index) & (df["method"] != "sweep")]


# --------------------------------------------------------------------------- plots
def sweep_plots(df: pd.DataFrame, plot_dir: Path) -> list[Path]:
    """One PNG per dtype: finite-difference error against step for each swept case and scheme."""
    sweep = df[df["method"] == "sweep"]
    if sweep.empty:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .engines.finite import step_scale

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
def render(df: pd.DataFrame, plots: list[str] | None = None, title: str = "diffbench report",
           scale: pd.DataFrame | None = None) -> str:
    """The markdown report for a results table (and, optionally, a small scaling study's table)."""
    env = environment_of(df)
    main = df[df["method"] != "sweep"]
    out = [f"# {md(title)}", ""]
    if env:
        out.append("| | |\n|---|---|")
        for key in ("date", "commit", "python", "tensorflow", "sympy", "numpy", "mpmath", "cpu", "gpu", "profile",
                    "timer_resolution_s"):
            if key in env:
                out.append(f"| {key} | {md(env[key])} |")
        for key in ("jax", "torch"):
            if env.get(key, "not installed") != "not installed":
                out.append(f"| {key} | {md(env[key])} |")
        out.append("")
    n_cases = main["case"].nunique()
    out.append(f"{n_cases} cases, {len(main)} rows. Statuses and columns are explained in reports/README.md; "
               "the reference is the certified high-precision derivative, so `rel_error` is the true error.")
    out += ["", "## Summary (rows per status)", "", _summary_table(main), ""]
    mismatches = _expected_mismatches(main)
    if len(mismatches):
        out.append(f"**{len(mismatches)} rows differ from the status their case expects** (column `expected`):")
        out.append("")
        for _, r in mismatches.iterrows():
            out.append(f"- {md(r['case'])} {md(r['method'])}/{md(r['variant'])} {r['dtype']}"
                       f"{' (2nd order)' if r['order'] == 2 else ''}: expected `{r['expected']}`, got `{r['status']}`")
        out.append("")
    else:
        out += ["Every row has the status its case expects (column `expected`).", ""]
    for dtype in sorted(main["dtype"].dropna().unique()):
        if dtype == "-":
            continue
        table = _accuracy_table(main, dtype)
        if table:
            out += [f"## Accuracy, {dtype} (status and relative error against the reference)", "", table, ""]
    for dtype in sorted(main["dtype"].dropna().unique()):
        table = _runtime_table(main, dtype) if dtype != "-" else ""
        if table:
            out += [f"## Runtime, {dtype} (median per gradient; in brackets grad/f, the cost of the gradient over "
                    "one evaluation of the function; ~ marks an unstable measurement)", "", table, ""]
    hess = _hessian_table(main)
    if hess:
        out += ["## Second derivatives (Hessians; status and relative error)", "", hess, ""]
    if scale is not None and len(scale):
        from .scale import section

        out += [section(scale), ""]
    if plots:
        out += ["## Finite-difference step sweep", "",
                "Error against the relative step c for forward and central differences: truncation error falls "
                "as the step shrinks until rounding error takes over (the V). The circle marks the step diffbench "
                "chooses.", ""]
        out += [f"![{md(Path(p).stem)}]({p})" for p in plots] + [""]
    out += ["## Every row that is not ok, with its diagnosis", "", _problems(main)]
    return "\n".join(out)


def _umask() -> int:
    # reading the umask means setting it; set it straight back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write a file so that readers see the old or the new version, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; give it the mode any new file gets here (0666 less the umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({} if isinstance(text, bytes) else {"encoding": "utf-8"})) as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(df: pd.DataFrame, out_dir: str | Path, title: str = "diffbench report",
          scale: pd.DataFrame | None = None) -> Path:
    """Write results.csv (and scale.csv), plots/ and report.md into ``out_dir`` (each atomically);
    return report.md's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.csv", df.to_csv(index=False))
    if scale is not None and len(scale):
        atomic_write(out / "scale.csv", scale.to_csv(index=False))
    plots = [str(p.relative_to(out)) for p in sweep_plots(df, out / "plots")]
    report = out / "report.md"
    atomic_write(report, render(df, plots, title, scale))
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
    atomic_write(report, render(df, plots, scale=scale))
    return report
