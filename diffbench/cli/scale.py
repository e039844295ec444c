"""``python -m diffbench scale CASE``: time every method against problem size for one case."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..case import load_cases
from ..errors import UsageError
from ..paths import slug
from ..scale import JACOBIAN_CASES, JACOBIAN_SIZES, MAX_JACOBIAN_ENTRIES, sized_case, write_jacobian_study, write_study
from ..selection import cases_path
from .options import EXIT_OK, fail

#: exit status for an unknown case, a case without sizes= or malformed --sizes
EXIT_BAD_CASE = 1


def _sizes(text: str) -> list[int]:
    """--sizes ``10,100,1e3`` as integers; raises UsageError."""
    try:
        return [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--sizes takes integers like 10,100,1000, got {text!r}") from None


def _jacobian_cases(args: argparse.Namespace) -> list[Any]:
    """The cases ``scale --jacobian`` studies: CASE if given, else :data:`JACOBIAN_CASES`; raises UsageError."""
    library = load_cases(cases_path(args.cases))
    names = [args.case] if args.case else list(JACOBIAN_CASES)
    found = [sized_case(library, name) for name in names]
    from ..engines import output_size

    scalar = [one.name for one in found if output_size(one) == 1]
    if scalar:
        raise UsageError(f"case {scalar[0]!r} returns a scalar: it has a gradient, not a Jacobian; "
                         "leave out --jacobian")
    return found


def cmd_scale(args: argparse.Namespace) -> int:
    """Run the scaling study for one case (or, with ``--jacobian``, of Jacobians); exit 0, or 1 for a case or
    sizes it cannot study."""
    try:
        if args.jacobian:
            cases = _jacobian_cases(args)
            sizes = _sizes(args.sizes) if args.sizes else list(JACOBIAN_SIZES)
        else:
            if not args.case:
                raise UsageError("name the case to study (e.g. rosenbrock), or give --jacobian")
            case = sized_case(load_cases(cases_path(args.cases)), args.case)
            sizes = _sizes(args.sizes or "10,100,1000")
    except UsageError as exc:
        return fail(str(exc), EXIT_BAD_CASE)
    methods = [m.strip() for m in args.methods.split(",")]
    if args.jacobian:
        out = Path(args.out or ("reports/latest/scale-jacobians" if not args.case
                                else f"reports/latest/scale-jacobian-{slug(args.case)}"))
        path = write_jacobian_study(cases, sizes, methods, out, args.dtype, args.budget, args.profile,
                                    progress=lambda text: print(f"  {text}", file=sys.stderr, flush=True),
                                    max_entries=int(args.max_entries))
        print(f"diffbench: Jacobian scaling report written to {path}")
        return EXIT_OK
    # git-ignored, like run's default; the case's name is the user's text, so only its slug names the folder
    out = Path(args.out or f"reports/latest/scale-{slug(case.name)}")
    path = write_study(case, sizes, methods, out, args.dtype, args.budget, args.profile,
                       progress=lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    print(f"diffbench: scaling report written to {path}")
    return EXIT_OK


def add_command(sub: Any) -> None:
    """Register ``scale``."""
    parser = sub.add_parser("scale", help="time every method against problem size for one case")
    parser.add_argument("case", nargs="?", help="a case with sizes= (e.g. rosenbrock, softplus_sum, logsumexp_stable, "
                        "mlp_tanh); with --jacobian optional (default: " + ", ".join(JACOBIAN_CASES) + ")")
    parser.add_argument("--cases", metavar="PATH", help="case file or folder (default: the repository's cases/)")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes n (default 10,100,1000; with --jacobian "
                        + ",".join(map(str, JACOBIAN_SIZES)) + ")")
    parser.add_argument("--jacobian", action="store_true",
                        help="time whole Jacobians of vector-output cases (default: " + " and ".join(JACOBIAN_CASES)
                        + ") with tape eager/function/forward, finite central and symbolic, with log-log slopes "
                        "(default --out reports/latest/scale-jacobians)")
    parser.add_argument("--max-entries", type=float, default=MAX_JACOBIAN_ENTRIES, metavar="N",
                        help="with --jacobian: sizes whose Jacobian has more entries are skipped (default 1e8, "
                             "800 MB in float64)")
    parser.add_argument("--methods", default="symbolic,tape,finite", help="methods (also jax, torch)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--budget", type=float, default=20.0, metavar="SECONDS",
                        help="per method/variant, for the whole study: a size is skipped when the time spent plus "
                             "its predicted time (extrapolated from smaller sizes) exceeds this, and a size that "
                             "runs past what is left of it is stopped (each size runs in a separate process) and "
                             "gives a timeout row naming the budget (default 20)")
    parser.add_argument("--profile", choices=["quick", "full"], default="quick")
    parser.add_argument("--out", metavar="DIR", help="output folder (default reports/latest/scale-CASE, git-ignored)")
    parser.set_defaults(func=cmd_scale)
