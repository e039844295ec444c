"""Results table -> report.md, results.csv and plots. Never re-runs anything.

Everything here reads the tidy DataFrame (or the CSV it was saved as), so a report can
be regenerated from ``results.csv`` alone: ``python -m diffbench report results.csv``.
The machine's facts travel in ``env_*`` columns of the same CSV.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .case import matches
from .engines.finite import step_scale
from .paths import inside, slug
from .results import (PRODUCT_VARIANTS, CASE_NOTE, ENV_PREFIX, FUNCTION_CAUSES, STATUSES, SWEEP, Status, atomic_write,
                      for_csv, from_csv, measurements, sweep_points, without_sweep)
from .results import read_results as _read_results
from .metrics import is_exact
from .timing import resolution

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
    """Read a results.csv written by diffbench, statuses and causes as plain text (raises ValueError if it is
    not one); the public, typed reader is :func:`diffbench.read_results`."""
    return _read_results(path, typed=False)


def is_function_fault(cause: Any) -> bool:
    """Whether a row's ``cause`` is the function's own fault as written (no method could avoid the error)."""
    return isinstance(cause, str) and cause in FUNCTION_CAUSES


def _function_fault(df: pd.DataFrame) -> pd.Series:
    """Per row: its cause is the function's own fault (see :data:`diffbench.results.FUNCTION_CAUSES`)."""
    if "cause" not in df.columns:
        return pd.Series(False, index=df.index, dtype=bool)
    return df["cause"].map(is_function_fault).astype(bool)


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


#: the summary's column for ``inaccurate`` rows that are the function's own fault (apart from ``inaccurate``)
FUNCTION_COLUMN = "inaccurate: function's fault"


def _summary_table(df: pd.DataFrame, labels: list[str]) -> str:
    table = _first_order(df)
    table = table[table["method"] != CASE_NOTE]
    # the function's own fault is not the method's: counted in a column of its own
    status = table["status"].astype(str).where(~_function_fault(table), FUNCTION_COLUMN)
    counts = table.assign(label=table["label"] + " " + table["dtype"], status=status).pivot_table(
        index="label", columns="status", values="case", aggfunc="count", fill_value=0, sort=False)
    order = [f"{lab} {d}" for lab in labels for d in ("float32", "float64")]
    columns = STATUS_ORDER[:2] + [FUNCTION_COLUMN] + STATUS_ORDER[2:]
    counts = counts.reindex(index=[i for i in order if i in counts.index],
                            columns=[s for s in columns if s in counts.columns])
    counts.index = [md(i) for i in counts.index]
    return counts.to_markdown()


def _where(rows: pd.DataFrame) -> str:
    """The rows of a group, compactly: each case with the variants, dtypes and orders it covers."""
    return "; ".join(f"{md(case_name)} ({md(_what(mine))})" for case_name, mine in rows.groupby("case", sort=False))


def _diagnosis_text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


#: a clause of a case's own numbers longer than this is shown as its varying numbers with a few words of context
_LONG_CLAUSE = 120


def _own_numbers(text: str, texts: set[str]) -> str:
    """What is a row's own in its group ``texts``: the clauses of ``text`` (split at "; ") that differ within the
    group — its relative error, worst element and values. A differing clause longer than a line is shortened to
    its differing numbers, each with the three words before it. The whole text when the group's clauses do not
    line up."""
    split = [t.split("; ") for t in texts]
    mine = text.split("; ")
    if any(len(parts) != len(mine) for parts in split):
        return text
    own = []
    for i, clause in enumerate(mine):
        variants = {parts[i] for parts in split}
        if len(variants) == 1:
            continue
        own.append(clause if len(clause) <= _LONG_CLAUSE else _varying_numbers(clause, variants))
    return "; ".join(own) or text


def _varying_numbers(clause: str, variants: set[str]) -> str:
    """The numbers of ``clause`` that differ among ``variants`` (the same clause in other rows), each after the
    three words that precede it: ``step h ≈ 0.00054, differences err by 4.8e-08``."""
    numbers = [[m.group(0) for m in _NUMBER.finditer(v)] for v in variants]
    matches = list(_NUMBER.finditer(clause))
    if any(len(found) != len(matches) for found in numbers):
        return clause
    parts, previous_end = [], 0
    for i, match in enumerate(matches):
        context = clause[previous_end:match.start()]
        previous_end = match.end()
        if len({found[i] for found in numbers}) == 1:
            continue
        words = [w for w in context.replace("(", " ").replace(")", " ").split() if w.strip(",:;[]")]
        words = [w.strip(",:;") for w in words[-3:]]
        parts.append(" ".join(words + [match.group(0)]))
    return ", ".join(parts) or clause


def _worst_row(rows: pd.DataFrame) -> pd.Series:
    """The row of ``rows`` with the largest relative error (the first when none has one)."""
    errors = pd.to_numeric(rows["rel_error"], errors="coerce") if "rel_error" in rows.columns else None
    if errors is None or errors.isna().all():
        return rows.iloc[0]
    return rows.loc[errors.idxmax()]


def _what(rows: pd.DataFrame) -> str:
    """The variants, dtypes and orders of a case's rows, compactly (``central f64, forward f32 order 2``)."""
    return ", ".join(dict.fromkeys(f"{r['variant']} {str(r['dtype']).replace('float', 'f')}"
                                   + (" order 2" if r["order"] == 2 else "") for _, r in rows.iterrows()))


def _problems(df: pd.DataFrame) -> str:
    """Non-ok rows grouped by status, method, cause and diagnosis up to its numbers. A group whose rows all say
    the same gives its text once with its rows' places; otherwise the shared text with the numbers left out
    (…), then one line per case with that case's own numbers (relative error, worst element, true and computed
    values) from its worst row. Rows whose cause is the function's own fault are marked so."""
    bad = df[df["status"] != Status.OK]
    if bad.empty:
        return "Every row is `ok`.\n"
    text = bad["diagnosis"].map(_diagnosis_text)
    fault = _function_fault(bad)
    bad = bad.assign(text=text, shape=text.map(lambda t: _NUMBER.sub("#", t)), fault=fault,
                     rank=bad["status"].map(lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else 99))
    lines = []
    for (_, status, method, fault, shape), rows in bad.groupby(["rank", "status", "method", "fault", "shape"],
                                                              sort=True):
        n_cases = rows["case"].nunique()
        whose = (f" · the function's own fault ({', '.join(sorted(set(map(str, rows['cause']))))}): no method "
                 "following this formula does better" if fault else "")
        head = (f"- `{status}` · {md(method)}{whose} · {len(rows)} row{'s' * (len(rows) != 1)} in {n_cases} "
                f"case{'s' * (n_cases != 1)}")
        texts = set(rows["text"])
        if len(texts) == 1:
            lines += [f"{head}: {_where(rows)}", f"  - {md(next(iter(texts)) or 'no diagnosis')}"]
            continue
        lines += [f"{head}:", f"  - {md(shape.replace('#', '…'))}"]
        for case_name, mine in rows.groupby("case", sort=False):
            worst = _worst_row(mine)
            others = f"; worst of {len(mine)} rows: {md(worst['variant'])}" if len(mine) > 1 else ""
            lines.append(f"    - {md(case_name)} ({md(_what(mine))}{others}): {md(_own_numbers(worst['text'], texts))}")
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
    return shorten(text, 80) or "no diagnosis"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with "…" where it was cut; never cut
    inside a word (a single word longer than ``limit`` is kept whole)."""
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    if text[limit - 1].isspace():
        cut = head  # the cut falls between words
    else:
        space = head.rfind(" ")
        cut = head[:space] if space > 0 else text.split(" ", 1)[0]
    return cut.rstrip(" ,;:(") + "…"


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
    so that every table and figure of a report lists them alike. Case notes are not methods: they get no label."""
    main = measurements(df)
    main = main[main["method"] != CASE_NOTE]
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


def _exact_timed(rows: pd.DataFrame) -> pd.DataFrame:
    """The ok, timed, exact, CPU order-1 rows of one dtype (float64 when there are any), each with its label."""
    rows = _first_order(rows) if "label" not in rows.columns else rows
    exact = pd.Series([_exact(m, v) for m, v in zip(rows["method"], rows["variant"])], index=rows.index, dtype=bool)
    timed = rows[(rows["status"] == Status.OK) & rows["time_median_s"].notna() & (rows["device"] == "CPU") & exact]
    dtype = "float64" if (timed["dtype"] == "float64").any() else "float32"
    return timed[timed["dtype"] == dtype]


def _break_even(timed: pd.DataFrame, label: str, against: str) -> float:
    """Median over cases of the gradient calls after which ``label``'s longer set-up is paid back by its faster
    calls against ``against``: (preparation − its preparation) ÷ (its per-call time − per-call time). 0 when
    ``label`` is both quicker to set up and faster per call; inf when it is never faster per call; NaN when no
    case times both."""
    mine = timed[timed["label"] == label].drop_duplicates("case").set_index("case")
    theirs = timed[timed["label"] == against].drop_duplicates("case").set_index("case")
    calls = []
    for name in mine.index.intersection(theirs.index):
        saving = float(theirs.at[name, "time_median_s"]) - float(mine.at[name, "time_median_s"])
        extra = float(mine.at[name, "prepare_s"]) - float(theirs.at[name, "prepare_s"])
        if math.isnan(saving) or math.isnan(extra):
            continue
        calls.append(math.inf if saving <= 0 else max(extra, 0.0) / saving)
    return float(np.median(calls)) if calls else math.nan


def _calls_text(calls: float) -> str:
    if math.isnan(calls):
        return "no case times both"
    if math.isinf(calls):
        return "never (not faster per call)"
    if calls == 0:
        return "at once (quicker to set up too)"
    count = math.ceil(calls)
    return f"after {count:,} call{'s' * (count != 1)}" if count < 1e6 else f"after {count:.1e} calls"


def _quickest_to_prepare(timed: pd.DataFrame) -> str | None:
    prepare = timed.groupby("label", sort=False)["prepare_s"].median().dropna()
    return str(prepare.idxmin()) if len(prepare) else None


def _fastest_phrase(rows: pd.DataFrame) -> str:
    timed = _exact_timed(rows)
    if timed.empty:
        return "no exact method was timed ok"
    winners = timed.loc[timed.groupby("case", sort=False)["time_median_s"].idxmin(), "label"]
    best = winners.value_counts().index[0]
    ratio = timed[timed["label"] == best]["grad_over_f"].astype(float).median()
    ratio_text = f", grad/f {ratio:.2g}" if not math.isnan(ratio) else ""
    text = f"fastest exact: {md(best)} ({int((winners == best).sum())} of {len(winners)} cases{ratio_text})"
    quickest = _quickest_to_prepare(timed)
    if quickest is not None and quickest != best:
        calls = _break_even(timed, best, quickest)
        if not math.isnan(calls):
            text += f"; counting set-up it beats {md(quickest)} {_calls_text(calls)}"
    return text


def setup_table(df: pd.DataFrame) -> pd.DataFrame:
    """Exact methods ranked by their median time per gradient (ok, CPU, order 1, float64 when there is any), with
    their median one-off preparation and the break-even: how many gradient calls it takes before the time saved
    per call pays for the longer set-up, against the method quickest to set up (median over the cases both
    time)."""
    timed = _exact_timed(df)
    columns = ["method", "per gradient", "preparation", "cases", "break-even"]
    if timed.empty:
        return pd.DataFrame(columns=columns)
    quickest = _quickest_to_prepare(timed)
    if quickest is None:
        columns.remove("break-even")
    table = []
    for label, mine in timed.groupby("label", sort=False):
        calls = _break_even(timed, str(label), quickest) if quickest and label != quickest else math.nan
        table.append({"method": str(label), "seconds": float(mine["time_median_s"].median()),
                      "per gradient": format_seconds(mine["time_median_s"].median()),
                      "preparation": format_seconds(mine["prepare_s"].median()), "cases": mine["case"].nunique(),
                      "break-even": ("quickest to set up" if label == quickest else
                                     f"{_calls_text(calls)} against {quickest}")})
    return pd.DataFrame(table).sort_values("seconds", kind="stable")[columns]


def _not_ok_phrase(rows: pd.DataFrame) -> str:
    bad = rows[rows["status"] != Status.OK]
    if bad.empty:
        return "every row ok"
    fault = _function_fault(bad)
    orders = "orders 1 and 2" if (rows["order"] == 2).any() else "order 1"
    out = []
    if fault.any():
        causes = bad[fault]["cause"].astype(str).value_counts()
        out.append(f"**the function's own fault: {int(fault.sum())}** ("
                   + ", ".join(f"{c} {n}" for c, n in causes.items())
                   + "; every exact method following the formula errs as much)")
    parts = []
    methods = bad[~fault]
    for status in [s for s in STATUS_ORDER if s in set(methods["status"]) and s != Status.OK]:
        of = methods[methods["status"] == status]
        if status not in BY_CAUSE:
            parts.append(f"`{status}` {len(of)}")
            continue
        # counted after shortening, so two causes that read alike once cut are one entry
        causes = of["diagnosis"].map(lambda d: _short(cause_of(d))).value_counts()
        shown = "; ".join(f"{n}× {md(c)}" for c, n in causes.head(2).items())
        more = f"; {int(causes.iloc[2:].sum())}× other" if len(causes) > 2 else ""
        parts.append(f"`{status}` {len(of)} ({shown}{more})")
    if parts:
        out.append(("the methods': " if fault.any() else "") + ", ".join(parts))
    return f"not ok ({orders}): " + "; ".join(out)


def _short(cause: str, limit: int = 60) -> str:
    return shorten(cause, limit)


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


@contextlib.contextmanager
def plain_text_plots() -> Iterator[None]:
    """Draw with mathtext and TeX off: case names are the user's text, and a ``$`` in one (``price in $``) must
    print as a dollar, not start a formula that fails to parse."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield


def plot_text(text: Any) -> str:
    """A user string as a figure shows it: unprintable characters (a NUL, a newline) escaped as ``\\x00``, so that
    no glyph is missing and no label breaks its line (mathtext is off: see :func:`plain_text_plots`)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(text))


def plain_log_ticks(axis: Any) -> None:
    """Tick labels of a log-scaled ``axis`` as plain text (``1e-05``, and the minor ticks too where the axis
    spans little): matplotlib's default writes them as mathtext, which :func:`plain_text_plots` turns off, so
    they would print raw."""
    from matplotlib.ticker import LogFormatter

    axis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


#: the mark of an ``inaccurate`` row whose cause is the function's own fault (drawn hatched)
FUNCTION_MARK = "f"


def _legend_lines(width_in: float, fontsize: float) -> str:
    """The heatmap's legend, wrapped to the figure's width."""
    items = [f"{mark} {status}" for status, mark in STATUS_MARKS.items()]
    items.insert(1, f"{FUNCTION_MARK} (hatched) inaccurate, the function's own fault: no method could avoid it")
    items.append("grey: no gradient or no truth")
    # a character of a small sans-serif font is about 0.55 em wide
    per_line = max(30, int(width_in * 72 / (0.55 * fontsize)))
    lines, line = [], ""
    for item in items:
        candidate = f"{line}   {item}" if line else item
        if len(candidate) > per_line and line:
            lines.append(line)
            candidate = item
        line = candidate
    return "\n".join(lines + [line])


def heatmap_figure(df: pd.DataFrame, title: str = "Correct digits, −log10(relative error), order-1 rows") -> Any:
    """The accuracy heatmap as a matplotlib figure (see :func:`accuracy_heatmap`), or None when there is nothing
    to draw. Cases × method/variant, one panel per dtype, order-1 rows: colour = correct digits, a letter for
    each non-ok status, ``f`` and hatching where the function as written is at fault. A case that could not run
    at all (a case note) is a row of ``E``. ``title`` heads the figure."""
    first = _first_order(df)
    if first.empty:
        return None
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    notes = first[first["method"] == CASE_NOTE]
    cells_df = first[first["method"] != CASE_NOTE]
    cases = _case_order(first)
    labels = label_order(cells_df) or ["(no method ran)"]
    dtypes = [d for d in ("float32", "float64") if d in set(cells_df["dtype"])] or sorted(set(cells_df["dtype"]))
    dtypes = dtypes or ["float64"]
    failed = set(notes["case"].astype(str))
    width = max(4.5, 2.6 + 0.45 * len(labels) * len(dtypes) + 0.06 * max(len(c) for c in cases))
    height = 2.4 + 0.22 * len(cases)
    fig = plt.figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, len(dtypes), squeeze=False, sharey=True)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    image = None
    for ax, dtype in zip(axes[0], dtypes):
        part = cells_df[cells_df["dtype"] == dtype]
        cells = part.drop_duplicates(["case", "label"]).set_index(["case", "label"])
        grid = np.full((len(cases), len(labels)), np.nan)
        marks: list[tuple[int, int, str]] = []
        for i, name in enumerate(cases):
            for j, label in enumerate(labels):
                if (name, label) not in cells.index:
                    if name in failed:
                        marks.append((i, j, STATUS_MARKS["error"]))
                    continue
                row = cells.loc[(name, label)]
                # undefined and uncertain rows have no truth to count digits against: grey, with their mark
                if row["status"] in (Status.OK, Status.INACCURATE):
                    grid[i, j] = correct_digits(row["rel_error"])
                mark = STATUS_MARKS.get(str(row["status"]), "")
                if row["status"] == Status.INACCURATE and is_function_fault(row.get("cause")):
                    mark = FUNCTION_MARK
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////", linewidth=0,
                                           edgecolor="white", alpha=0.8))
                if mark:
                    marks.append((i, j, mark))
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=DIGITS_MAX, aspect="auto",
                          interpolation="nearest")
        for i, j, mark in marks:
            ax.text(j, i, mark, ha="center", va="center", fontsize=7, fontweight="bold",
                    color="white" if not np.isnan(grid[i, j]) and grid[i, j] < 9 else "black")
        # upright at 90°: neighbouring labels cannot touch, and their boxes are their true extents
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(cases)), [plot_text(c) for c in cases], fontsize=7)
        ax.set_title(dtype, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.supxlabel(_legend_lines(width, 7), fontsize=7)
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.04, pad=0.02, label="correct digits")
    return fig


def accuracy_heatmap(df: pd.DataFrame, path: Path) -> Path | None:
    """Draw :func:`heatmap_figure` into ``path`` (a PNG). Returns the PNG's path, or None when there is nothing to
    draw."""
    with plain_text_plots():
        fig = heatmap_figure(df)
        if fig is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
        _pyplot().close(fig)
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
    plain_log_ticks(ax.xaxis)
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
            line, = ax.loglog(curve["step"].astype(float), errs, marker=".", label=plot_text(f"{case_name} {scheme}"))
            chosen = step_scale(scheme, str(dtype))
            nearest = curve.iloc[(curve["step"].astype(float) - chosen).abs().argsort()[:1]]
            ax.scatter([chosen], [max(float(nearest["rel_error"].iloc[0]), 1e-17)], color=line.get_color(),
                       marker="o", s=60, edgecolors="black", zorder=3)
        plain_log_ticks(ax.xaxis)
        plain_log_ticks(ax.yaxis)
        ax.set_xlabel("relative step c (h = c·max(|x|, 1))")
        ax.set_ylabel("relative error of the gradient")
        ax.set_title(f"Finite differences in {dtype}: truncation vs rounding (circle = chosen step)")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, which="both", alpha=0.3)
        path = inside(plot_dir, plot_dir / f"step_sweep_{slug(dtype)}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------- report
#: the first-screen figures, relative to the report's folder
HEATMAP_PNG = "plots/accuracy.png"
COST_PNG = "plots/cost.png"


# --------------------------------------------------------------------------- Jacobians
#: the Jacobian section's figures, relative to the report's folder
JACOBIAN_DIGITS_PNG = "plots/jacobian_digits.png"
JACOBIAN_COST_PNG = "plots/jacobian_cost.png"
#: the worst Jacobian rows first: a row's status is the worst over its output rows, in this order
JACOBIAN_SEVERITY = ["error", "timeout", "nan", "inf", "none", "inaccurate", "uncertain", "undefined", "skipped",
                     "ok"]
#: how many of the worst Jacobian rows the section lists
WORST_JACOBIAN_ROWS = 10
#: one "out[k] / x[i]: expected E, got G" clause of a Jacobian row's diagnosis (for display only)
_ENTRY_CLAUSE = re.compile(r"out\[[^\]]*\] / [^:;]+: expected [^,;]+, got [^;,]+(?:,[^;,]*\d[^;,]*)?")


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as numbers (NaN where missing or not a number); NaN throughout when the table lacks it."""
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    return pd.to_numeric(df[column], errors="coerce").astype("float64")


def jacobian_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The order-1 measurements of vector-output cases (``outputs`` > 1), with their ``label``; empty when the
    table has none (or predates the ``outputs`` column)."""
    first = _first_order(df)
    first = first[first["method"] != CASE_NOTE]
    return first[_numeric(first, "outputs") > 1]


def jacobian_heatmap(df: pd.DataFrame, path: Path) -> Path | None:
    """Correct digits of each vector-output case's Jacobian per method/variant (−log10 of ``rel_error``, the worst
    output row's normwise error), drawn as the accuracy heatmap is, into ``path``. None when there is nothing to
    draw."""
    rows = jacobian_rows(df)
    if rows.empty:
        return None
    with plain_text_plots():
        fig = heatmap_figure(rows, "Jacobians: correct digits, −log10(relative error of the worst output row)")
        if fig is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
        _pyplot().close(fig)
    return path


def jacobian_costs(df: pd.DataFrame) -> pd.DataFrame:
    """Per vector-output case, method and dtype (CPU rows timed): the median time of each full-Jacobian variant,
    and, where the method has ``jvp``/``vjp`` rows, m × (time of one uᵀ·J) and N × (time of one J·v): what
    building the Jacobian row by row (reverse mode) or column by column (forward mode) would cost, and the
    full Jacobian's time over each. Columns: case, method, variant, dtype, outputs, inputs, jacobian_s,
    rows_s (m × VJP), columns_s (N × JVP), over_rows, over_columns."""
    rows = jacobian_rows(df)
    rows = rows[(rows["device"] == "CPU") & (_numeric(rows, "time_median_s") > 0) & (rows["status"] != "skipped")]
    out = []
    for (case_name, method, dtype), part in rows.groupby(["case", "method", "dtype"], sort=False):
        times = dict(zip(part["variant"].astype(str), _numeric(part, "time_median_s")))
        m = float(_numeric(part, "outputs").max())
        n = float(_numeric(part, "n_inputs").max())
        rows_s = m * times["vjp"] if "vjp" in times else math.nan
        columns_s = n * times["jvp"] if "jvp" in times else math.nan
        for variant, seconds in times.items():
            if variant in PRODUCT_VARIANTS:
                continue
            out.append({"case": case_name, "method": method, "variant": variant, "dtype": dtype, "outputs": m,
                        "inputs": n, "jacobian_s": seconds, "rows_s": rows_s, "columns_s": columns_s,
                        "over_rows": seconds / rows_s if rows_s > 0 else math.nan,
                        "over_columns": seconds / columns_s if columns_s > 0 else math.nan})
    columns = ["case", "method", "variant", "dtype", "outputs", "inputs", "jacobian_s", "rows_s", "columns_s",
               "over_rows", "over_columns"]
    return pd.DataFrame(out, columns=columns)


def jacobian_cost_plot(df: pd.DataFrame, path: Path) -> Path | None:
    """Time per Jacobian per method/variant (a dot per case and dtype, a bar at the median; log scale) and, where
    ``jvp``/``vjp`` rows were timed, the Jacobian's time over m × VJP and over N × JVP. None when no Jacobian
    row was timed."""
    costs = jacobian_costs(df)
    if costs.empty:
        return None
    plt = _pyplot()
    costs = costs.assign(label=costs["method"].astype(str) + "/" + costs["variant"].astype(str))
    labels = list(dict.fromkeys(costs["label"]))
    ratios = costs[costs["over_rows"].notna() | costs["over_columns"].notna()]
    panels = 2 if len(ratios) else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 1.4 + 0.32 * len(labels)), squeeze=False,
                             sharey=True)
    ax = axes[0][0]
    for offset, dtype, colour in ((-0.15, "float32", "tab:orange"), (0.15, "float64", "tab:blue")):
        part = costs[costs["dtype"] == dtype]
        for j, label in enumerate(labels):
            values = part[part["label"] == label]["jacobian_s"].astype(float)
            if values.empty:
                continue
            ax.scatter(values, np.full(len(values), j + offset), s=10, alpha=0.6, color=colour,
                       label=dtype if not any(t.get_label() == dtype for t in ax.collections) else None)
            ax.scatter([values.median()], [j + offset], marker="|", s=200, color="black")
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.margins(x=0.08)
    ax.set_yticks(range(len(labels)), [plot_text(x) for x in labels], fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # top to bottom, each label's dots (±0.15) inside
    ax.set_xlabel("seconds per Jacobian (| = median over cases)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if panels == 2:
        ax = axes[0][1]
        for offset, column, colour, name in (
                (-0.15, "over_rows", "tab:red", "over m × VJP (reverse, by rows)"),
                (0.15, "over_columns", "tab:green", "over N × JVP (forward, by columns)")):
            for j, label in enumerate(labels):
                values = ratios[ratios["label"] == label][column].astype(float).dropna()
                values = values[values > 0]
                if values.empty:
                    continue
                ax.scatter(values, np.full(len(values), j + offset), s=10, alpha=0.7, color=colour,
                           label=name if not any(t.get_label() == name for t in ax.collections) else None)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.margins(x=0.08)
        ax.set_xlabel("Jacobian time over the products' (< 1: the full Jacobian is cheaper)")
        ax.grid(True, axis="x", which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Jacobians: cost per method", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _worst_entries(diagnosis: Any) -> str:
    """The ``out[k] / x[i]: expected E, got G`` clauses of a diagnosis (for display), else the diagnosis cut."""
    text = _diagnosis_text(diagnosis)
    clauses = [c.strip() for c in _ENTRY_CLAUSE.findall(text)]
    return "; ".join(clauses[:3]) if clauses else shorten(text, 160)


def _worst_jacobian_table(rows: pd.DataFrame) -> str:
    """The worst Jacobian rows (status, then relative error), with the entries their diagnoses name."""
    severity = {status: rank for rank, status in enumerate(JACOBIAN_SEVERITY)}
    bad = rows[rows["status"].astype(str) != "ok"]
    if bad.empty:
        return ""
    ranked = bad.assign(_rank=bad["status"].astype(str).map(lambda s: severity.get(s, len(severity))),
                        _err=-_numeric(bad, "rel_error").fillna(-math.inf))
    ranked = ranked.sort_values(["_rank", "_err"], kind="stable").head(WORST_JACOBIAN_ROWS)
    table = pd.DataFrame({
        "case": ranked["case"].map(md),
        "method": ranked["label"].map(md),
        "dtype": ranked["dtype"],
        "output": ranked["output_shape"].map(lambda v: md(_diagnosis_text(v))) if "output_shape" in ranked
        else "",
        "status": ranked["status"].astype(str),
        "rel_error": _numeric(ranked, "rel_error").map(_num),
        "worst entries (expected, got)": ranked["diagnosis"].map(lambda d: md(_worst_entries(d))),
    })
    return table.to_markdown(index=False)


#: whose products (``vjp``/``jvp`` rows) the cost table compares, first found first: automatic differentiation's,
#: whose VJP is one reverse pass and JVP one forward pass (a finite-difference "VJP" costs N evaluations)
PRODUCT_METHODS = ("tape", "jax", "torch")
#: the full Jacobians in reverse and in forward mode the cost table sets side by side (method, variant)
MODE_VARIANTS = {"reverse": ("tape", "function"), "forward": ("tape", "forward")}


def _faster(reverse: float, forward: float) -> str:
    """``forward`` or ``reverse``, whichever time is smaller; "-" when either is unknown."""
    if math.isnan(reverse) or math.isnan(forward) or reverse == forward:
        return "-"
    return "forward" if forward < reverse else "reverse"


def _cost_table(costs: pd.DataFrame) -> str:
    """Per case and dtype: the fastest full Jacobian; TensorFlow's full Jacobian in reverse mode (tape/function)
    and in forward mode (tape/forward), and which is faster; m × VJP and N × JVP of one automatic method
    (:data:`PRODUCT_METHODS`, else any method with products), and which is faster; and the cheapest way."""
    out = []
    for (case_name, dtype), part in costs.groupby(["case", "dtype"], sort=False):
        best = part.loc[part["jacobian_s"].idxmin()]
        full = {mode: part[(part["method"] == method) & (part["variant"] == variant)]["jacobian_s"]
                for mode, (method, variant) in MODE_VARIANTS.items()}
        full = {mode: float(times.iloc[0]) if len(times) else math.nan for mode, times in full.items()}
        with_products = part[part["rows_s"].notna() & part["columns_s"].notna()]
        ranked = sorted(with_products["method"].unique(),
                        key=lambda m: PRODUCT_METHODS.index(m) if m in PRODUCT_METHODS else len(PRODUCT_METHODS))
        source = with_products[with_products["method"] == ranked[0]].iloc[0] if ranked else None
        rows_s = float(source["rows_s"]) if source is not None else math.nan
        columns_s = float(source["columns_s"]) if source is not None else math.nan
        options = {f"full Jacobian ({best['method']}/{best['variant']})": best["jacobian_s"],
                   f"by rows (m × VJP, {source['method']})" if source is not None else "by rows": rows_s,
                   f"by columns (N × JVP, {source['method']})" if source is not None else "by columns": columns_s}
        known = {k: v for k, v in options.items() if not math.isnan(v)}
        out.append({"case": md(case_name), "dtype": dtype, "m × N": f"{int(best['outputs'])} × {int(best['inputs'])}",
                    "fastest Jacobian": f"{md(best['method'])}/{md(best['variant'])} "
                                        f"{format_seconds(best['jacobian_s'])}",
                    "reverse (tape/function)": format_seconds(full["reverse"]) or "-",
                    "forward (tape/forward)": format_seconds(full["forward"]) or "-",
                    "faster mode (full J)": _faster(full["reverse"], full["forward"]),
                    "m × VJP": format_seconds(rows_s) or "-", "N × JVP": format_seconds(columns_s) or "-",
                    "faster mode (products)": _faster(rows_s, columns_s),
                    "cheapest": md(min(known, key=known.get)) if len(known) > 1 else "-"})
    return pd.DataFrame(out).to_markdown(index=False) if out else ""


def jacobian_section(df: pd.DataFrame, figures: dict[str, str] | None = None) -> list[str]:
    """The report's Jacobian section (markdown lines), or no lines when the run has no vector-output rows."""
    rows = jacobian_rows(df)
    if rows.empty:
        return []
    figures = figures or {}
    ok = int((rows["status"].astype(str) == "ok").sum())
    lines = ["## Jacobians", "",
             f"_{_plural(rows['case'].nunique(), 'vector-output case')}, {_plural(len(rows), 'row')}, {ok} `ok`: "
             "each output row of a Jacobian is judged as a gradient, the row's status is the worst over them and "
             "`rel_error` the largest of their relative errors (reports/README.md, *Jacobians*)._", ""]
    if "jacobian_digits" in figures:
        lines += [f"![Jacobians: correct digits per case and method]({figures['jacobian_digits']})", ""]
    worst = _worst_jacobian_table(rows)
    lines += (["The worst rows, with the entries their diagnoses name (out[k] / input[i]: expected, got):", "",
               worst, ""] if worst else ["Every Jacobian row is `ok`.", ""])
    costs = jacobian_costs(df)
    if not costs.empty:
        lines += ["Cost (median per Jacobian, CPU). Reverse mode costs about m backward passes and forward mode "
                  "about N forward passes, so forward mode wins on tall Jacobians (m > N) and reverse mode on wide "
                  "ones. Two measures of it: TensorFlow's whole Jacobian in reverse mode (tape/function, vectorised "
                  "by pfor and traced) against forward mode (tape/forward, one vectorised pass), and m × VJP "
                  "(building it row by row from vector-Jacobian products) against N × JVP (column by column from "
                  "Jacobian-vector products), both products of one automatic method (tape first), each timed as "
                  "one call (TensorFlow's eagerly, so its fixed overhead counts m or N times).", "",
                  _cost_table(costs), ""]
        if "jacobian_cost" in figures:
            lines += [f"![Jacobians: cost per method]({figures['jacobian_cost']})", ""]
    return lines


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


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading (lower case, punctuation dropped, spaces to dashes)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return "#" + text.replace(" ", "-")


def _summary_line(main: pd.DataFrame) -> str:
    first = _first_order(main)
    first = first[first["method"] != CASE_NOTE]
    bad = first[first["status"] != Status.OK]
    if first.empty:
        return "_No order-1 row was measured._"
    if bad.empty:
        return f"_All {len(first)} order-1 rows are `ok`._"
    counts = bad.assign(label=bad["label"] + " " + bad["dtype"].astype(str))["label"].value_counts()
    worst = counts.index[0]
    return (f"_{len(first) - len(bad)} of {len(first)} order-1 rows are `ok`; the most rows not ok: {md(worst)} "
            f"({counts.iloc[0]})._")


def _accuracy_line(main: pd.DataFrame, dtype: str) -> str:
    part = _first_order(main)
    part = part[(part["dtype"] == dtype) & (part["method"] != CASE_NOTE)]
    judged = part[part["status"].isin([Status.OK, Status.INACCURATE])]
    if judged.empty:
        return f"_No {dtype} gradient could be judged._"
    digits = judged.assign(d=judged["rel_error"].map(correct_digits)).groupby("label", sort=False)["d"].median()
    best, worst = digits.idxmax(), digits.idxmin()
    return (f"_{int((part['status'] == Status.OK).sum())} of {len(part)} rows `ok`; median correct digits from "
            f"{digits.min():.0f} ({md(worst)}) to {digits.max():.0f} ({md(best)})._")


def _runtime_line(main: pd.DataFrame, dtype: str) -> str:
    part = _first_order(main)
    part = part[(part["dtype"] == dtype) & part["time_median_s"].notna() & (part["device"] == "CPU")]
    if part.empty:
        return ""
    winners = part.loc[part.groupby("case", sort=False)["time_median_s"].idxmin(), "label"].value_counts()
    return (f"_Fastest per call: {md(winners.index[0])} in {winners.iloc[0]} of {int(winners.sum())} cases "
            "(set-up not counted; the set-up section above counts it)._")


def _problems_line(main: pd.DataFrame) -> str:
    bad = main[main["status"] != Status.OK]
    if bad.empty:
        return "_Every row is `ok`._"
    fault = _function_fault(bad)
    return (f"_{_plural(len(bad), 'row')} not ok in {_plural(bad['case'].nunique(), 'case')}; {int(fault.sum())} of "
            "them the function's own fault. One entry per status, method and cause; where the numbers differ, one line per "
            "case with its worst row's numbers._")


def render(df: pd.DataFrame, plots: list[str] | None = None, title: str = "diffbench report",
           scale: pd.DataFrame | None = None, figures: dict[str, str] | None = None,
           failures: list[str] | None = None) -> str:
    """The markdown report for a results table (and, optionally, a small scaling study's table).

    The first screen holds the row counts, the count of rows that are the function's own fault apart from the
    methods' failures, a line of links to every section, a headline per case family, the figures named in
    ``figures`` (``accuracy`` and ``cost``: paths relative to the report), the order-1 status counts and the
    cost of set-up against per-call time. The long tables (accuracy, runtime, Hessians, scaling, step sweep)
    and the grouped diagnoses follow in an appendix, each section opening with a one-line summary. ``plots``
    are the step-sweep figures; ``failures`` names figures that could not be drawn.
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
    bad = main[main["status"] != Status.OK]
    fault = _function_fault(bad)
    if len(bad):
        n_fault = int(fault.sum())
        out += [f"Not ok: **{int((~fault).sum())} rows are the methods' failures**; "
                + (f"**{n_fault} {'is' if n_fault == 1 else 'are'} the function's own fault**" if n_fault else
                   "none is the function's own fault") + " (cause "
                + ", ".join(f"`{c}`" for c in sorted(FUNCTION_CAUSES)) + ": the function as written loses the "
                "accuracy, so every exact method following it errs as much, and no method is to blame).", ""]
    dtypes = [d for d in ("float32", "float64") if d in set(main["dtype"])]
    sections = ["Headline (per case family)", "Summary (order-1 rows per status)", "Set-up against per-call time"]
    jacobians = jacobian_section(main, figures)
    if jacobians:
        sections.append("Jacobians")
    if len(mismatches):
        sections.append("Rows that differ from what their case expects")
    appendix = ([f"Accuracy, {d}" for d in dtypes] + [f"Runtime, {d}" for d in dtypes if _runtime_tables(
        main, d, cases, labels)] + (["Second derivatives"] if _hessian_table(main, cases) else [])
        + (["Scaling"] if scale is not None and len(scale) else []) + (["Finite-difference step sweep"] if plots
                                                                       else [])
        + ["Rows that are not ok, grouped by status, method and cause"] + (["Environment"] if env else []))
    out += ["Contents: " + " · ".join(f"[{t}]({_anchor(t)})" for t in sections)
            + " · appendix (long tables): " + " · ".join(f"[{t}]({_anchor(t)})" for t in appendix), ""]
    out += ["## Headline (per case family)", "",
            "_Per family: correct digits by method, the fastest exact method (and when its set-up pays off), and "
            "the rows not ok, the function's own fault counted apart._", ""] + _headline(main) + [""]
    if "accuracy" in figures:
        out.append(f"![accuracy: correct digits per case and method]({figures['accuracy']})")
    if "cost" in figures:
        out.append(f"![cost: grad/f per method]({figures['cost']})")
    for failure in failures or []:
        out.append(f"_{md(failure)}_")
    out += ["", "## Summary (order-1 rows per status)", "", _summary_line(main), "", _summary_table(main, labels),
            ""]
    setup = setup_table(main)
    out += ["## Set-up against per-call time", ""]
    if setup.empty:
        out += ["_No exact method was timed ok._", ""]
    else:
        out += [f"_Ranked by median time per gradient; a method that is faster per call but slower to set up pays "
                f"off only after the break-even number of gradient calls (preparation ÷ per-call saving, median "
                f"over cases)._", "", setup.assign(method=setup["method"].map(md)).to_markdown(index=False), ""]
    out += jacobians
    if len(mismatches):
        out += ["## Rows that differ from what their case expects", "",
                f"_{_plural(len(mismatches), 'row')} in {_plural(mismatches['case'].nunique(), 'case')}; one line per "
                "case and status._",
                ""] + _mismatch_lines(mismatches) + [""]
    out += ["# Appendix: the long tables", ""]
    for dtype in dtypes:
        out += [f"## Accuracy, {dtype} (status and relative error against the reference)", "",
                _accuracy_line(main, dtype), ""]
        out += _accuracy_tables(main, dtype, cases, labels)
    for dtype in dtypes:
        tables = _runtime_tables(main, dtype, cases, labels)
        if tables:
            out += [f"## Runtime, {dtype} (median per gradient; in brackets grad/f, the cost of the gradient over "
                    "one evaluation of the function; ~ marks an unstable measurement)", "",
                    _runtime_line(main, dtype), ""] + tables
    hess = _hessian_table(main, cases)
    if hess:
        second = main[main["order"] == 2]
        out += ["## Second derivatives (Hessians; status and relative error)", "",
                f"_{int((second['status'] == Status.OK).sum())} of {len(second)} order-2 rows `ok`._", "", hess, ""]
    if scale is not None and len(scale):
        out += [scaling_section(scale), ""]
    if plots:
        out += ["## Finite-difference step sweep", "",
                "Error against the relative step c for forward and central differences: truncation error falls "
                "as the step shrinks until rounding error takes over (the V). The circle marks the step diffbench "
                "chooses.", ""]
        out += [f"![{md(Path(p).stem)}]({p})" for p in plots] + [""]
    out += ["## Rows that are not ok, grouped by status, method and cause", "", _problems_line(main), "",
            _problems(main)]
    if env:
        out += ["## Environment", "", f"_{md(env.get('cpu', ''))}, {md(env.get('gpu', ''))}._", "",
                "| | |\n|---|---|"]
        for key in ("date", "commit", "python", "tensorflow", "sympy", "numpy", "mpmath", "cpu", "gpu", "profile",
                    "timer_resolution_s"):
            if key in env:
                out.append(f"| {key} | {md(env[key])} |")
        for key in ("jax", "torch"):
            if env.get(key, "not installed") != "not installed":
                out.append(f"| {key} | {md(env[key])} |")
        out.append("")
    return "\n".join(out)


def _draw(df: pd.DataFrame, out: Path) -> tuple[list[str], dict[str, str], list[str]]:
    """Draw every figure into ``out``/plots: the step sweeps, the heatmap and the cost plot. A figure that fails
    to draw is named in the third list instead, so that the report is written all the same."""
    plots: list[str] = []
    figures: dict[str, str] = {}
    failures: list[str] = []
    drawers = [("step sweep", lambda: plots.extend(str(p.relative_to(out)) for p in sweep_plots(df, out / "plots"))),
               ("accuracy", lambda: accuracy_heatmap(df, out / HEATMAP_PNG) and figures.update(accuracy=HEATMAP_PNG)),
               ("cost", lambda: cost_plot(df, out / COST_PNG) and figures.update(cost=COST_PNG)),
               ("Jacobian digits", lambda: jacobian_heatmap(df, out / JACOBIAN_DIGITS_PNG)
                and figures.update(jacobian_digits=JACOBIAN_DIGITS_PNG)),
               ("Jacobian cost", lambda: jacobian_cost_plot(df, out / JACOBIAN_COST_PNG)
                and figures.update(jacobian_cost=JACOBIAN_COST_PNG))]
    for name, draw in drawers:
        try:
            with plain_text_plots():
                draw()
        except Exception as exc:  # noqa: BLE001 - a figure is never worth the report it belongs to
            failures.append(f"The {name} figure could not be drawn ({type(exc).__name__}: {exc}).")
            with contextlib.suppress(Exception):
                _pyplot().close("all")
    return plots, figures, failures


def _for_csv(df: pd.DataFrame) -> pd.DataFrame:
    """The table as results.csv holds it: timing samples as one cell of space-separated seconds, and the status
    ``nan`` spelled so that plain ``pandas.read_csv`` keeps it (:data:`diffbench.results.CSV_SPELLING`)."""
    if "time_samples_s" in df.columns:
        df = df.assign(time_samples_s=df["time_samples_s"].map(format_samples))
    return for_csv(df)


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


def _write_parquet(out: Path) -> None:
    """results.parquet beside results.csv, with the typed columns of :func:`diffbench.read_results`, when pyarrow
    is installed (the CSV stays the file every reader can use)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return
    table = _read_results(out / "results.csv", typed=True)
    tmp = out / ".results.parquet.tmp"
    try:
        table.to_parquet(tmp, index=False)
        os.replace(tmp, out / "results.parquet")
    finally:
        tmp.unlink(missing_ok=True)


def write(df: pd.DataFrame, out_dir: str | Path, title: str = "diffbench report",
          scale: pd.DataFrame | None = None) -> Path:
    """Write results.csv (and scale.csv, and results.parquet when pyarrow is installed), plots/ and report.md
    into ``out_dir`` (each atomically); return report.md's path. The table is written first; a figure that
    cannot be drawn is named in the report, never a reason to lose it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.csv", _for_csv(df).to_csv(index=False))
    if scale is not None and len(scale):
        atomic_write(out / "scale.csv", for_csv(scale).to_csv(index=False))
    _write_parquet(out)
    plots, figures, failures = _draw(df, out)
    report = out / "report.md"
    atomic_write(report, render(df, plots, title, scale, figures, failures))
    return report


def regenerate(results_csv: str | Path, out_dir: str | Path | None = None) -> Path:
    """Rebuild report.md (and plots) from a results.csv (and the scale.csv beside it, if any);
    return report.md's path."""
    df = read_results(results_csv)
    out = Path(out_dir) if out_dir else Path(results_csv).parent
    out.mkdir(parents=True, exist_ok=True)
    scale_csv = Path(results_csv).parent / "scale.csv"
    scale = from_csv(pd.read_csv(scale_csv, keep_default_na=False, na_values=[""])) if scale_csv.exists() else None
    plots, figures, failures = _draw(df, out)
    report = out / "report.md"
    atomic_write(report, render(df, plots, scale=scale, figures=figures, failures=failures))
    return report
