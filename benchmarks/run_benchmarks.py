"""diffbench's own speed: wall time of the quick profile, and timing fidelity.

Run from the repository root:  python benchmarks/run_benchmarks.py
Writes benchmarks/RESULTS.md. These are measurements of a shared, noisy machine, so
they live here and not in the test suite; quote them with the machine they came from.

- quick profile: the wall time of `python -m diffbench run` (whole default suite,
  TensorFlow's import included), in a subprocess, as a user runs it.
- timing fidelity: the same rows measured twice back to back in one process; for each
  row |t1 − t2| / mean(t1, t2); reported as the median and 90th percentile per method.
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


def fidelity(profile: str) -> pd.DataFrame:
    sys.path.insert(0, str(ROOT))
    from diffbench import load_cases, run

    cases = [c for c in load_cases(ROOT / "cases") if "classic" in c.tags or "seed" in c.tags]
    key = ["case", "method", "variant", "dtype", "device"]
    runs = [run(cases, dtypes=["float64"], order2=False, profile=profile) for _ in range(2)]
    a, b = (r[r.method != "sweep"].dropna(subset=["time_median_s"]).set_index(key)["time_median_s"] for r in runs)
    both = pd.concat([a, b], axis=1, keys=["first", "second"]).dropna()
    both["spread"] = (both["first"] - both["second"]).abs() / both.mean(axis=1)
    return both.reset_index()


def main() -> None:
    wall, rows = quick_profile_wall()
    lines = ["# diffbench benchmarks", "", f"Machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; "
             f"measured {time.strftime('%Y-%m-%d')}.", "",
             "## Quick profile (`python -m diffbench run`, whole default suite)", "",
             f"- wall time: **{wall:.1f} s** for {rows} rows (target ≤ 60 s on 2 cores, TensorFlow's import included)",
             ""]
    for profile in ("quick", "full"):
        both = fidelity(profile)
        table = both.groupby("method")["spread"].agg(
            rows="count", median=lambda s: f"{np.median(s):.1%}", p90=lambda s: f"{np.quantile(s, 0.9):.1%}")
        lines += [f"## Timing fidelity, {profile} profile (two back-to-back runs, float64, seed + classic cases)", "",
                  f"Median relative spread over all {len(both)} rows: **{np.median(both['spread']):.1%}**.", "",
                  table.to_markdown(), ""]
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
