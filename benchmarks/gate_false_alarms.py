"""The gate's false alarms and catches, measured the way a user meets them.

One ``snapshot`` of benchmarks/gate_cases.py, then ``check --fail-slower`` run again and again
with a second ``python -m diffbench run`` of the same cases going on beside it the whole time
(restarted whenever it finishes):

1. ``--runs`` checks of unchanged code: each exit 3 is a false alarm (target 0);
2. ``--runs`` checks with ``DIFFBENCH_GATE_SLOWER=<case>``, which makes that case compute its
   body twice (same value, twice the work): each exit other than 3 is a miss (target 0).

Prints one markdown line per check (exit code, seconds, load average, rows flagged and
confirmed) and the two totals. Run from the repository root:

    python benchmarks/gate_false_alarms.py --runs 10

Takes about (2·runs + 3) minutes on 2 loaded cores.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "benchmarks" / "gate_cases.py"
#: six rows per case (24 in all): SymPy and SymEngine, the eager tape and tf.function, two finite differences
SELECT = ["--methods", "symbolic,tape,finite", "--variants", "symbolic=numpy,symengine", "--variants",
          "tape=eager,function", "--variants", "finite=central,forward", "--dtypes", "float64"]


def diffbench(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Run ``python -m diffbench *args``; return (exit code, stdout, seconds)."""
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "diffbench", *args], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ if env is None else env, TF_CPP_MIN_LOG_LEVEL="3"))
    return out.returncode, out.stdout, time.perf_counter() - began


class BackgroundRun:
    """A second ``diffbench run`` of the same cases, restarted until stopped: the load beside each check."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.stop, self.count = folder, threading.Event(), 0
        self.process: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.process = subprocess.Popen(
                [sys.executable, "-m", "diffbench", "run", "--cases", str(CASES), *SELECT, "--out",
                 str(self.folder / f"run{self.count}")], cwd=ROOT, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            self.process.wait()
            self.count += 1

    def __enter__(self) -> "BackgroundRun":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.thread.join(timeout=60)


def summary(code: int, stdout: str) -> str:
    """What a check said, in a few words: rows flagged and re-measured, confirmed, undecided."""
    if code == 0:
        match = re.search(r"(\d+) flagged", stdout)
        return f"ok; {match.group(1) if match else '?'} flagged rows re-measured, all within the limit"
    confirmed = [line for line in stdout.splitlines() if line.startswith("- ") and "slower than ×" in line
                 and "cannot tell" not in line]
    undecided = [line for line in stdout.splitlines() if "cannot tell" in line or "could not be re-measured" in line]
    names = sorted({re.sub(r"\*\*(\S+)\*\* (\S+) .*", r"\1 \2", line[2:]) for line in confirmed})
    return f"{len(confirmed)} confirmed ({', '.join(names)}); {len(undecided)} too noisy to tell"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="checks of each kind (default 10)")
    parser.add_argument("--fail-slower", default="median:20%", help="the gate's option (default median:20%%)")
    parser.add_argument("--slower-case", default="gate_rosenbrock", help="the case made twice as slow")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        folder = Path(tmp)
        baseline = str(folder / "baseline.json")
        select = ["--cases", str(CASES), *SELECT, "--baseline", baseline]
        code, _, seconds = diffbench("snapshot", *select)
        if code:
            print(f"snapshot failed with exit code {code}", file=sys.stderr)
            return 1
        print(f"snapshot: {seconds:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
        print("| check | code | exit | seconds | load (1 min) | what it said |")
        print("| --- | --- | --- | --- | --- | --- |")
        totals = {"unchanged": [], "slower": []}
        with BackgroundRun(folder) as load:
            for kind in ("unchanged", "slower"):
                env = dict(os.environ)
                if kind == "slower":
                    env["DIFFBENCH_GATE_SLOWER"] = args.slower_case
                for i in range(args.runs):
                    code, stdout, seconds = diffbench("check", *select, "--fail-slower", args.fail_slower, env=env)
                    totals[kind].append(code)
                    what = "unchanged" if kind == "unchanged" else f"{args.slower_case} ×2"
                    print(f"| {i + 1} | {what} | {code} | {seconds:.0f} | {os.getloadavg()[0]:.1f} | "
                          f"{summary(code, stdout)} |", flush=True)
            background = load.count
        unchanged, slower = totals["unchanged"], totals["slower"]
        print(f"\nunchanged code: {sum(c == 3 for c in unchanged)} of {len(unchanged)} checks exit 3 (false alarms); "
              f"exit codes {unchanged}")
        print(f"{args.slower_case} twice as slow: {sum(c == 3 for c in slower)} of {len(slower)} checks exit 3 "
              f"(caught); exit codes {slower}")
        print(f"beside them: {background} complete background runs of the same cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
