"""Two runs side by side: what changed in accuracy, and what changed in speed beyond the noise.

In the manner of pyperf ``compare_to``: rows are matched on their key (case, method, variant,
dtype, device, order); accuracy changes are status changes and correct digits gained or lost;
a speed change is reported only when it is large *and* significant. Where both rows carry
their timing samples (the ``time_samples_s`` column) significance is the one-sided
Mann-Whitney U test of :mod:`diffbench.slowdown` (p < 0.01 either way); where one lacks them,
the medians must differ by more than the threshold and the interquartile ranges must not
overlap, and the output says that this weaker rule was used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import KEY
from .report import correct_digits, format_seconds, parse_samples, read_results
from .results import Status, without_sweep
from .slowdown import DEFAULT_ALPHA, mann_whitney_greater

#: default: medians must differ by more than this fraction (runs minutes apart drift by tens of percent on a
#: shared machine: benchmarks/RESULTS.md)
DEFAULT_THRESHOLD = 0.5
#: default: digits gained or lost that count as an accuracy change
DEFAULT_DIGITS = 1.0


@dataclass(frozen=True)
class SpeedChange:
    """One row's significant speed change: medians before and after, and how it was judged."""

    label: str
    before_s: float
    after_s: float
    how: str

    @property
    def ratio(self) -> float:
        """after / before: above 1 is slower."""
        return self.after_s / self.before_s if self.before_s > 0 else math.inf


def results_path(run: str | Path) -> Path:
    """The results.csv of a run folder, or the CSV itself; raises FileNotFoundError when there is none."""
    path = Path(run)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no results.csv there (pass a run folder or a results CSV)")
    return path


def _label(row: Any) -> str:
    order = " order 2" if int(row["order"]) == 2 else ""
    device = "" if row["device"] == "CPU" else f" {row['device']}"
    return f"{row['case']} {row['method']}/{row['variant']} {row['dtype']}{device}{order}"


def _speed(row: Any, threshold: float, alpha: float) -> SpeedChange | None:
    before, after = float(row["time_median_s_a"]), float(row["time_median_s_b"])
    if not (before > 0 and after > 0) or math.isnan(before) or math.isnan(after):
        return None
    if max(after / before, before / after) <= 1 + threshold:
        return None
    samples_a, samples_b = parse_samples(row.get("time_samples_s_a")), parse_samples(row.get("time_samples_s_b"))
    if samples_a and samples_b:
        p_value = (mann_whitney_greater(samples_b, samples_a) if after > before
                   else mann_whitney_greater(samples_a, samples_b))
        return SpeedChange(_label(row), before, after, f"p = {p_value:.2g}") if p_value < alpha else None
    iqr_a, iqr_b = float(row["time_iqr_s_a"] or 0), float(row["time_iqr_s_b"] or 0)
    iqr_a, iqr_b = (0.0 if math.isnan(iqr_a) else iqr_a), (0.0 if math.isnan(iqr_b) else iqr_b)
    # each run's middle half of the samples, [median - IQR/2, median + IQR/2] roughly: apart, or no change
    low, high = ((before, iqr_a), (after, iqr_b)) if before < after else ((after, iqr_b), (before, iqr_a))
    if low[0] + low[1] / 2 >= high[0] - high[1] / 2:
        return None
    return SpeedChange(_label(row), before, after, "no samples: IQRs apart")


def compare_runs(run_a: str | Path, run_b: str | Path, threshold: float = DEFAULT_THRESHOLD,
                 digits: float = DEFAULT_DIGITS, alpha: float = DEFAULT_ALPHA) -> list[str]:
    """The lines ``diffbench compare`` prints for two runs (folders or results CSVs).

    ``threshold``: the fraction by which medians must differ for a speed change; ``digits``: the correct digits
    gained or lost that count as an accuracy change; ``alpha``: the significance level of the Mann-Whitney test.
    Raises FileNotFoundError for a run without results and ValueError for a CSV that is not diffbench's.
    """
    path_a, path_b = results_path(run_a), results_path(run_b)
    a = read_results(path_a)
    b = read_results(path_b)
    a, b = without_sweep(a), without_sweep(b)
    key = list(KEY)
    merged = a.merge(b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    lines = [f"A: {path_a} ({len(a)} rows)", f"B: {path_b} ({len(b)} rows)", ""]

    status_changes, digit_changes = [], []
    for _, row in both.iterrows():
        if row["status_a"] != row["status_b"]:
            status_changes.append(f"  {_label(row)}: {row['status_a']} -> {row['status_b']}"
                                  f"{_digits_text(row)}")
        elif row["status_a"] in (Status.OK, Status.INACCURATE):
            d_a, d_b = correct_digits(row["rel_error_a"]), correct_digits(row["rel_error_b"])
            if not (math.isnan(d_a) or math.isnan(d_b)) and abs(d_b - d_a) >= digits:
                verb = "gained" if d_b > d_a else "lost"
                digit_changes.append((d_b - d_a, f"  {_label(row)}: {verb} {abs(d_b - d_a):.1f} digits "
                                                 f"({d_a:.1f} -> {d_b:.1f}), {row['status_b']}"))
    lines.append(f"Accuracy: {len(status_changes)} status change(s), {len(digit_changes)} row(s) gained or lost "
                 f"at least {digits:g} correct digit(s)")
    lines += status_changes
    lines += [text for _, text in sorted(digit_changes, key=lambda item: item[0])]
    if not status_changes and not digit_changes:
        lines.append("  no change")

    timed = both[both["time_median_s_a"].notna() & both["time_median_s_b"].notna()]
    changes = [change for change in (_speed(row, threshold, alpha) for _, row in timed.iterrows()) if change]
    with_samples = all(parse_samples(r.get("time_samples_s_a")) and parse_samples(r.get("time_samples_s_b"))
                       for _, r in timed.iterrows())
    rule = (f"medians {threshold * 100:g}% apart and a Mann-Whitney U test with p < {alpha:g}" if with_samples else
            f"medians {threshold * 100:g}% apart and, where a run has no timing samples, interquartile ranges "
            "that do not overlap (a plain ratio with a threshold, weaker than a significance test)")
    lines += ["", f"Speed: {len(changes)} significant change(s) of {len(timed)} timed row(s) ({rule})"]
    for change in sorted(changes, key=lambda c: c.ratio, reverse=True):
        word = f"{change.ratio:.2f}x slower" if change.ratio > 1 else f"{1 / change.ratio:.2f}x faster"
        lines.append(f"  {change.label}: {format_seconds(change.before_s)} -> {format_seconds(change.after_s)}: "
                     f"{word} ({change.how})")
    lines.append(f"  not significant: {len(timed) - len(changes)} row(s)")

    only_a, only_b = int((merged["_merge"] == "left_only").sum()), int((merged["_merge"] == "right_only").sum())
    if only_a or only_b:
        lines += ["", f"Rows only in A: {only_a}; only in B: {only_b}"]
    return lines


def _digits_text(row: Any) -> str:
    d_a, d_b = correct_digits(row["rel_error_a"]), correct_digits(row["rel_error_b"])
    if math.isnan(d_a) and math.isnan(d_b):
        return ""
    return f" (digits {_digits(d_a)} -> {_digits(d_b)})"


def _digits(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"

