"""The scaling of whole Jacobians: an elementwise map (m = N = n, a diagonal Jacobian) and a tanh dense layer of 4
units (m = 4, N = 5n + 4), n = 10 … 10⁴, per method, with log-log slopes.

    python benchmarks/jacobian_scaling.py [--sizes 10,30,100,300,1000,3000,10000] [--methods tape,finite,symbolic]
                                          [--budget 60] [--profile quick|full]

Runs :func:`diffbench.scale.jacobian_study` on the cases named by ``diffbench.scale.JACOBIAN_CASES`` (from
``cases/jacobians.py``), each size in a separate process stopped at the budget, and prints, per case, the median
seconds per Jacobian by n and method/variant (with the shape m × N) and the slopes. What to expect: reverse mode
costs about m vector-Jacobian products and forward mode about N Jacobian-vector products, each O(n) here, so for
the dense layer (m fixed at 4) reverse mode should grow about linearly and forward mode and central differences
about quadratically; for the elementwise map every method forms an n × n matrix (slope ≥ 2 once past the
overhead floor). The dense layer's Jacobian stays small (4 × (5n + 4)), so sizes past 10⁴ (``--sizes
...,100000,1000000``) show reverse mode's linear growth past TensorFlow's fixed overhead; the elementwise map's are
then skipped (over ``--max-entries``). ``python -m diffbench scale --jacobian`` writes the same study as a report
with plots.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from diffbench.case import load_cases
    from diffbench.report import format_seconds
    from diffbench.scale import JACOBIAN_CASES, JACOBIAN_SIZES, MAX_JACOBIAN_ENTRIES, jacobian_slopes, jacobian_study
    from diffbench.scale import sized_case

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, JACOBIAN_SIZES)))
    parser.add_argument("--methods", default="tape,finite,symbolic")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per method/variant and case")
    parser.add_argument("--profile", choices=["quick", "full"], default="quick")
    parser.add_argument("--max-entries", type=float, default=MAX_JACOBIAN_ENTRIES)
    args = parser.parse_args()
    library = load_cases(ROOT / "cases")
    cases = [sized_case(library, name) for name in JACOBIAN_CASES]
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    started = time.perf_counter()
    df = jacobian_study(cases, sizes, args.methods.split(","), budget_s=args.budget, profile=args.profile,
                        isolate=True, max_entries=int(args.max_entries),
                        progress=lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    slope_table = jacobian_slopes(df)
    for name, part in df.groupby("case", sort=False):
        part = part.assign(label=part["method"] + "/" + part["variant"],
                           cell=part.apply(lambda r: format_seconds(r["time_median_s"]) if r["status"] == "ok"
                                           else r["status"], axis=1))
        pivot = part.pivot_table(index="n", columns="label", values="cell", aggfunc="first", sort=False)
        shapes = part.drop_duplicates("n").set_index("n")
        pivot.insert(0, "m × N", [f"{int(shapes.loc[n, 'outputs'])} × {int(shapes.loc[n, 'n_inputs'])}"
                                  for n in pivot.index])
        print(f"\n### {name}: median seconds per Jacobian (float64, CPU)\n")
        print(pivot.fillna("").to_markdown())
        own = slope_table[slope_table["case"] == name].drop(columns=["case"])
        if len(own):
            print("\nLog-log slopes (fitted over the largest sizes past the overhead floor):\n")
            print(own.to_markdown(index=False, floatfmt=".2f"))
        worst = part["rel_error"].max()
        if worst == worst:
            print(f"\nLargest relative difference to the float64 tape/function Jacobian: {worst:.1e}")
        missed = part[part["status"] != "ok"].drop_duplicates(["method", "variant"])
        for _, row in missed.iterrows():
            print(f"- {row['method']}/{row['variant']} from n = {row['n']}: {row['status']} — {row['diagnosis']}")
    print(f"\n(the whole study: {time.perf_counter() - started:.0f} s wall)")


if __name__ == "__main__":
    main()
