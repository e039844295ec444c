"""diffbench's own speed: wall time of the quick profile, and timing fidelity.

Run from the repository root:  python benchmarks/run_benchmarks.py
Writes benchmarks/RESULTS.md. These are measurements of a shared, noisy machine, so
they live here and not in the test suite; quote them with the machine they came from.

- quick profile: the wall time of `python -m diffbench run` (whole default suite,
  TensorFlow's import included), in a subprocess, as a user runs it.
- timing fidelity: the same rows measured twice back to back in one process; for each
  row |t1 − t2| / mean(t1, t2), for the absolute median time and for the ratios taken
  within each round of the interleaved samples (``time_over_f``, ``time_over_fastest``,
  ``grad_over_f``); reported as the median, the 90th percentile and the share of rows
  whose two runs agree within 10%.

Only this script's own sections of RESULTS.md are rewritten; the others are kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def quick_profile_wall() -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "diffbench", "run", "--out", out], cwd=ROOT, check=True,
                       capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        wall = time.perf_counter() - start
        rows = len(pd.read_csv(Path(out) / "results.csv"))
    return wall, rows


MEASURES = ("time_median_s", "time_over_f", "time_over_fastest", "grad_over_f")


def fidelity(profile: str) -> pd.DataFrame:
    """Per row and measure, the relative spread between two back-to-back runs."""
    sys.path.insert(0, str(ROOT))
    from diffbench import load_cases, run

    cases = [c for c in load_cases(ROOT / "cases") if "classic" in c.tags or "seed" in c.tags]
    key = ["case", "method", "variant", "dtype", "device"]
    runs = [run(cases, dtypes=["float64"], order2=False, profile=profile) for _ in range(2)]
    out = []
    for measure in MEASURES:
        a, b = (r[~r.method.isin(["sweep", "case"])].dropna(subset=[measure]).set_index(key)[measure] for r in runs)
        both = pd.concat([a, b], axis=1, keys=["first", "second"]).dropna()
        both = both[(both["first"] > 0) & (both["second"] > 0)]
        both["spread"] = (both["first"] - both["second"]).abs() / both.mean(axis=1)
        out.append(both.reset_index().assign(measure=measure))
    return pd.concat(out, ignore_index=True)


def fidelity_lines(profile: str) -> list[str]:
    both = fidelity(profile)
    table = both.groupby("measure", sort=False)["spread"].agg(
        rows="count", median=lambda s: f"{np.median(s):.1%}", p90=lambda s: f"{np.quantile(s, 0.9):.1%}",
        within_10pct=lambda s: f"{np.mean(s <= 0.10):.0%}")
    by_method = both[both.measure == "time_over_fastest"].groupby("method")["spread"].agg(
        rows="count", median=lambda s: f"{np.median(s):.1%}", within_10pct=lambda s: f"{np.mean(s <= 0.10):.0%}")
    return [f"## Timing fidelity, {profile} profile (two back-to-back runs, float64, seed + classic cases)", "",
            "Samples of every row of a case are interleaved round-robin; ratios are medians of per-round ratios. "
            "Target: the ratios of two runs agree within 10% on at least 90% of rows.", "",
            table.to_markdown(), "", "`time_over_fastest` by method:", "", by_method.to_markdown(), ""]


def replace_sections(text: str, sections: dict[str, list[str]]) -> str:
    """``text`` with each ``## heading`` section whose heading starts with a key replaced (appended if absent)."""
    parts = text.split("\n## ")
    head, bodies = parts[0], ["## " + p for p in parts[1:]]
    for prefix, lines in sections.items():
        new = "\n".join(lines).rstrip() + "\n"
        for i, body in enumerate(bodies):
            if body.startswith(prefix):
                bodies[i] = new
                break
        else:
            bodies.append(new)
    return "\n".join([head.rstrip() + "\n"] + [b.rstrip() + "\n" for b in bodies])


def main() -> None:
    wall, rows = quick_profile_wall()
    sections = {"## Quick profile": [
        "## Quick profile (`python -m diffbench run`, whole default suite)", "",
        f"- wall time: **{wall:.1f} s** for {rows} rows (target ≤ 60 s on 2 cores, TensorFlow's import included); "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, measured {time.strftime('%Y-%m-%d')}"]}
    for profile in ("quick", "full"):
        sections[f"## Timing fidelity, {profile} profile"] = fidelity_lines(profile)
    path = ROOT / "benchmarks" / "RESULTS.md"
    old = path.read_text(encoding="utf-8") if path.exists() else "# diffbench benchmarks\n"
    path.write_text(replace_sections(old, sections), encoding="utf-8")
    for lines in sections.values():
        print("\n".join(lines))


if __name__ == "__main__":
    main()
