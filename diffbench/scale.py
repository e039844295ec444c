"""Scaling study: how preparation and gradient time grow with problem size.

``python -m diffbench scale CASE --sizes 10,100,1000`` runs every method and variant
on a size-parameterised case (``@case(sizes=lambda n: {...})``) at each size, until a
method's time budget (``--budget``) is spent: a size predicted to overrun it is ``skipped``,
and since a prediction is not a limit, each size runs in a separate process that is
stopped when the budget runs out (a ``timeout`` row naming the budget; larger sizes are
then skipped). It records preparation and evaluation time, for symbolic the expression size
of the gradient with and without CSE, fits log-log slopes, and writes scale.csv,
report.md and PNG plots.

Accuracy at large n has no certified reference (its cost grows as n²); each gradient
is instead cross-checked against the float64 ``tape/function`` gradient at the same
size (column ``reference`` says so).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .case import Case
from .errors import UsageError
from .paths import inside, slug
from .report import (FLOOR_FACTOR, atomic_write, format_seconds, md, plain_log_ticks, plain_text_plots, plot_text,
                     scaling_section, slopes)
from .results import Status, for_csv

#: the default report's scaling section is the report's (with :func:`slopes`); kept here under its old name
section = scaling_section

SCALE_COLUMNS = ["case", "n", "method", "variant", "dtype", "device", "status", "prepare_s", "time_median_s",
                 "time_iqr_s", "f_time_s", "grad_over_f", "expr_ops", "grad_ops_cse", "grad_ops_nocse", "rel_error",
                 "reference", "diagnosis"]


#: seconds a fresh measuring process may take to start (import the engines) before the study gives up on it
STARTUP_S = 300.0
#: extra seconds past a unit's budget before its process is stopped (the lag of its messages)
GRACE_S = 1.0


def _cross_check(sized: Any) -> Any:
    """The float64 tape/function gradient of ``sized``, flattened: what every row at that size is compared with."""
    from .engines import flatten, get_engine

    return flatten(get_engine("tape").prepare(sized, "function", "float64", "CPU").gradient(), list(sized.inputs))


def _measure_unit(sized: Any, method: str, variant: str, device: str, dtype: str, profile: str,
                  check: Any) -> dict[str, Any]:
    """One size of one method/variant on one device: status, times, accuracy against ``check``. Never raises for
    what the case or the engine does (that is the row's status)."""
    from .engines import Skip, flatten, get_engine, output_shape
    from .engines import symbolic as symbolic_engine
    from .timing import PROFILES, measure

    row: dict[str, Any] = {}
    try:
        engine = get_engine(method)
        with _jacobian_limits(sized, method):
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
        # expression sizes are those of a gradient's trace; a Jacobian (a vector case) has none of them, and
        # counting the m·N entries' operations would cost more than the Jacobian at large n
        if method == "symbolic" and not output_shape(sized):
            row.update(symbolic_engine.scale_columns(sized, variant, prepared))
    except Skip as exc:
        row.update(status=Status.SKIPPED, diagnosis=str(exc), skip=True)
    except Exception as exc:  # noqa: BLE001 - a failure at one size is a row
        row.update(status="error", diagnosis=f"{type(exc).__name__}: {exc}")
    return row


@contextlib.contextmanager
def _jacobian_limits(sized: Any, method: str) -> Any:
    """Within it, a vector case's forward-mode Jacobian is formed at any number of inputs: ``run`` caps forward
    mode at ``engines.tape.MAX_FORWARD_INPUTS`` (it pushes one tangent per input at once, memory as large as the
    Jacobian), but a Jacobian study bounds its sizes itself (``max_entries`` and the time budget), and measuring
    forward mode past that cap is the point of the study."""
    from .engines import output_shape

    if method != "tape" or not output_shape(sized):
        yield
        return
    from .engines import tape

    cap = tape.MAX_FORWARD_INPUTS
    tape.MAX_FORWARD_INPUTS = max(cap, sized.size)
    try:
        yield
    finally:
        tape.MAX_FORWARD_INPUTS = cap


def _worker(connection: Any, source_file: str, name: str) -> None:
    """A measuring process: load the case from its file, then measure what the parent sends, one unit at a time,
    saying ``start`` when a unit's work begins (the parent's clock for its budget starts there)."""
    from .case import load_cases

    case = next(c for c in load_cases(source_file) if c.name == name)
    connection.send(("ready", None))
    checks: dict[int, Any] = {}
    while True:
        unit = connection.recv()
        if unit is None:
            return
        kind, n, *rest = unit
        connection.send(("start", None))
        sized = case.at_size(n)
        if kind == "check":
            try:
                checks[n] = _cross_check(sized)
            except Exception:  # noqa: BLE001 - then rows say the cross-check is unavailable
                checks[n] = None
            connection.send(("done", checks[n] is not None))
            continue
        method, variant, device, dtype, profile = rest
        connection.send(("done", _measure_unit(sized, method, variant, device, dtype, profile, checks.get(n))))


class _Isolated:
    """Units measured in a separate process that is killed when a unit outlives its budget (then the next unit
    gets a fresh process). The budget is enforced from outside, so a size that hangs or grows past all
    prediction costs at most its budget."""

    def __init__(self, source_file: str, name: str) -> None:
        import multiprocessing as mp

        self._context = mp.get_context("spawn")
        self._source_file, self._name = source_file, name
        self._process: Any = None
        self._connection: Any = None
        #: the sizes whose cross-check gradient the study has (a fresh process computes them again)
        self.checked: set[int] = set()

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_worker, args=(child, self._source_file, self._name),
                                              daemon=True)
        self._process.start()
        child.close()
        self._connection = parent
        if not parent.poll(STARTUP_S):
            self.stop()
            raise RuntimeError(f"the measuring process did not start within {STARTUP_S:g} s")
        kind, _ = parent.recv()
        if kind != "ready":
            raise RuntimeError("the measuring process did not start")

    def run(self, unit: tuple[Any, ...], budget_s: float) -> tuple[bool, Any]:
        """Send ``unit``; return (True, its result), or (False, seconds it ran) when it ran past ``budget_s``
        seconds from its start (its process is then stopped) or its process died."""
        if self._process is None or not self._process.is_alive():
            self._start()
            # a fresh process holds no cross-check gradients: compute this size's again (not charged)
            if unit[0] != "check" and unit[1] in self.checked:
                self.run(("check", unit[1]), math.inf)
        try:
            self._connection.send(unit)
            if not self._connection.poll(STARTUP_S):
                raise EOFError
            self._connection.recv()  # "start"
            started = time.perf_counter()
            if not self._connection.poll(None if math.isinf(budget_s) else budget_s + GRACE_S):
                self.stop()
                return False, time.perf_counter() - started
            _, result = self._connection.recv()
        except (EOFError, OSError):
            self.stop()
            return False, None
        return True, result

    def stop(self) -> None:
        """End the measuring process (killed if it does not leave at once)."""
        if self._process is None:
            return
        with contextlib.suppress(Exception):
            self._connection.send(None)
        self._process.join(timeout=0.5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        with contextlib.suppress(Exception):
            self._connection.close()
        self._process = None


def study(case: Any, sizes: list[int], methods: list[str], dtype: str = "float64", budget_s: float = 20.0,
          profile: str = "quick", progress: Callable[[str], None] | None = None,
          variants: dict[str, tuple[str, ...]] | None = None, isolate: bool = False) -> pd.DataFrame:
    """Measure ``case`` at each size with each method/variant (``variants`` narrows a method's
    list); return the scaling table.

    ``budget_s`` is each method/variant's time for the whole study. A size is skipped when the time spent plus
    its predicted time exceeds it; with ``isolate`` (and a case loaded from a file) it is also a hard limit: each
    size runs in a separate process that is stopped when the variant's budget runs out, giving a ``timeout`` row
    that names the budget, and the variant's larger sizes are skipped. Without ``isolate`` (inside ``run``'s
    workers, which ``--timeout`` guards) the prediction is all there is.
    """
    from .engines import get_engine

    isolated = _Isolated(case.source_file, case.name) if isolate and getattr(case, "source_file", None) else None
    rows = []
    spent: dict[tuple[str, str, str], float] = {}
    history: dict[tuple[str, str, str], list[tuple[int, float]]] = {}  # (n, seconds for that size)
    try:
        for n in sizes:
            sized = case.at_size(n)
            if sized.problem:
                raise ValueError(sized.problem)
            check: Any = None
            if isolated is not None:
                finished, found = isolated.run(("check", n), budget_s)
                if finished and found:
                    isolated.checked.add(n)
            else:
                try:
                    check = _cross_check(sized)
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
                        used = spent.get(key, 0.0)
                        if math.isinf(used):
                            row.update(status=Status.SKIPPED, diagnosis=history_reason(key, history, budget_s))
                            rows.append(row)
                            continue
                        predicted = _predict(history.get(key, []), n)
                        if used + predicted > budget_s:
                            row.update(status=Status.SKIPPED, diagnosis=(
                                f"smaller sizes took {used:.1f} s and this size would take about "
                                f"{predicted:.0f} s more, over the budget of {budget_s:g} s (--budget)"))
                            rows.append(row)
                            continue
                        if progress:
                            progress(f"n={n} {method}/{variant} {device}")
                        began = time.perf_counter()
                        if isolated is None:
                            result = _measure_unit(sized, method, variant, device, dtype, profile, check)
                        else:
                            finished, result = isolated.run(("measure", n, method, variant, device, dtype, profile),
                                                            budget_s - used)
                            if not finished:
                                if result is None:
                                    row.update(status=Status.ERROR, diagnosis=(
                                        "the measuring process died at this size (a crash in native code or the "
                                        "interpreter, or the memory ran out); larger sizes are skipped"))
                                else:
                                    row.update(status=Status.TIMEOUT, diagnosis=(
                                        f"stopped after {result:.1f} s: {method}/{variant} had {budget_s - used:.1f} "
                                        f"s left of its budget of {budget_s:g} s (--budget; smaller sizes took "
                                        f"{used:.1f} s); larger sizes are skipped"))
                                spent[key] = math.inf
                                history.setdefault(key, []).append((n, math.inf))
                                rows.append(row)
                                continue
                            if n not in isolated.checked:
                                result.pop("rel_error", None)
                        skipped_by_engine = result.pop("skip", False)
                        row.update(result)
                        # prepare_s includes work another variant may have cached (the SymPy trace and diff):
                        # charge it anyway, since it is what this variant costs on its own
                        took = max(time.perf_counter() - began, float(row.get("prepare_s") or 0.0))
                        spent[key] = math.inf if skipped_by_engine else used + took
                        history.setdefault(key, []).append((n, took))
                        rows.append(row)
    finally:
        if isolated is not None:
            isolated.stop()
    return pd.DataFrame(rows, columns=SCALE_COLUMNS)


def history_reason(key: tuple[str, str, str], history: dict[tuple[str, str, str], list[tuple[int, float]]],
                   budget_s: float) -> str:
    """Why a variant measures no larger size: its budget ran out at a smaller one, or its engine skipped."""
    stopped = [n for n, took in history.get(key, []) if math.isinf(took)]
    if stopped:
        return f"{key[0]}/{key[1]} ran past its budget of {budget_s:g} s (--budget) at n = {stopped[0]}"
    return f"{key[0]}/{key[1]} skipped a smaller size (its reason is on that row)"


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


def plots(df: pd.DataFrame, out: Path, name: str, what: str = "gradient") -> list[Path]:
    """time-vs-n and expression-size-vs-n PNGs inside ``out``, named after :func:`diffbench.paths.slug` of
    ``name`` (a case name is the user's text: it never chooses the folder); ``what`` names what is timed
    (``gradient``, ``Jacobian``)."""
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
            # the title's "$" is text here, so the log axes need ticks that are plain text too (not mathtext)
            plain_log_ticks(ax.xaxis)
            plain_log_ticks(ax.yaxis)
            ax.set_xlabel("n (problem size)")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            if curves:  # every size failed or was skipped: an empty frame, without a legend of nothing
                ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(inside(out, path), dpi=90)
            plt.close(fig)
        return path

    ok = df[(df["status"] == Status.OK) & df["time_median_s"].notna()]
    curves = [(part.sort_values("n")["n"], part.sort_values("n")["time_median_s"],
               f"{method}/{variant}" + ("" if device == "CPU" else f" {device}"))
              for (method, variant, device), part in ok.groupby(["method", "variant", "device"])]
    title = plot_text(name)
    written = [loglog(curves, f"seconds per {what} (median)", f"{title}: {what} time against size",
                      out / f"{stem}_time.png")]
    sym = df[(df["method"] == "symbolic") & df["grad_ops_cse"].notna()].drop_duplicates("n").sort_values("n")
    if len(sym):
        written.append(loglog([(sym["n"], sym["expr_ops"], "function (count_ops)"),
                               (sym["n"], sym["grad_ops_nocse"], "gradient, no CSE"),
                               (sym["n"], sym["grad_ops_cse"], "gradient, with CSE")],
                              "operations (sympy.count_ops)", f"{title}: expression size against n",
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
    lines += _not_measured(df)
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
    df = study(case, sizes, methods, dtype, budget_s, profile, progress=progress, isolate=True)
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


# -- Jacobians ------------------------------------------------------------------------------------------------------

#: the cases ``scale --jacobian`` studies by default (cases/jacobians.py): a diagonal Jacobian (m = N = n) and a
#: wide one (4 outputs, N = 5n + 4 inputs), so that forward and reverse mode meet both shapes
JACOBIAN_CASES = ("elementwise_large", "dense_tanh")
#: sizes n for ``scale --jacobian`` when ``--sizes`` is not given: half-decades, so that a slope is fitted
#: from several sizes past the fixed-overhead floor
JACOBIAN_SIZES = (10, 30, 100, 300, 1000, 3000, 10_000)
#: the variants timed per method (reverse mode vectorised by pfor, eagerly and traced; forward mode in one
#: vectorised pass; central differences, one column per input with all outputs at once; SymPy's and SymEngine's
#: Jacobians); a method not named here is timed with its own scaling variants
JACOBIAN_VARIANTS: dict[str, tuple[str, ...]] = {"tape": ("eager", "function", "forward"), "finite": ("central",),
                                                 "symbolic": ("numpy", "symengine")}
#: the largest Jacobian (m·N entries) the study forms: 10⁸ float64 entries are 800 MB, and a method holds a few
#: such arrays at once (its result, the cross-check, TensorFlow's cotangents)
MAX_JACOBIAN_ENTRIES = 10**8

JACOBIAN_SCALE_COLUMNS = SCALE_COLUMNS + ["outputs", "n_inputs"]


def _jacobian_shape(sized: Case) -> tuple[int, int]:
    """(m, N) of a case at one size: outputs evaluated once in NumPy, inputs counted."""
    from .engines import output_size

    return output_size(sized), sized.size


def jacobian_study(cases: list[Case], sizes: list[int], methods: list[str], dtype: str = "float64",
                   budget_s: float = 20.0, profile: str = "quick", progress: Callable[[str], None] | None = None,
                   isolate: bool = False, max_entries: int = MAX_JACOBIAN_ENTRIES) -> pd.DataFrame:
    """Time the whole Jacobian of each vector-output case in ``cases`` against its size n (:func:`study` with
    :data:`JACOBIAN_VARIANTS`); return the table with columns :data:`JACOBIAN_SCALE_COLUMNS` (``outputs`` = m,
    ``n_inputs`` = N at that size).

    A size whose Jacobian has more than ``max_entries`` entries is not formed: each variant gets a ``skipped``
    row naming the size of the matrix. ``budget_s`` is each variant's time per case. Raises ValueError when a
    case returns a scalar at some size (it has a gradient, not a Jacobian; use :func:`study`).
    """
    parts = []
    for one in cases:
        shapes = {n: _jacobian_shape(one.at_size(n)) for n in sizes}
        scalar = [n for n, (m, _) in shapes.items() if m == 1]
        if scalar:
            raise ValueError(f"case {one.name!r} returns a scalar at n = {scalar[0]}: it has a gradient, not a "
                             "Jacobian; study it without --jacobian")
        fits = [n for n in sizes if shapes[n][0] * shapes[n][1] <= max_entries]
        df = study(one, fits, methods, dtype, budget_s, profile, progress=progress, variants=JACOBIAN_VARIANTS,
                   isolate=isolate) if fits else pd.DataFrame(columns=SCALE_COLUMNS)
        too_big = []
        for n in (n for n in sizes if n not in fits):
            m, inputs = shapes[n]
            labels = (df[["method", "variant", "device"]].drop_duplicates().itertuples(index=False) if len(df)
                      else [(method, variant, "CPU") for method in methods
                            for variant in JACOBIAN_VARIANTS.get(method, ("-",))])
            for method, variant, device in labels:
                reason = (f"the Jacobian has {m} × {inputs} = {m * inputs:.3g} entries ({8 * m * inputs / 1e9:.1f} GB in "
                          f"float64), over the study's limit of {max_entries:.3g} entries (--max-entries)")
                too_big.append(dict(case=one.name, n=n, method=method, variant=variant, dtype=dtype, device=device,
                                    status=Status.SKIPPED, diagnosis=reason))
        df = pd.concat([df, pd.DataFrame(too_big, columns=SCALE_COLUMNS)], ignore_index=True) if too_big else df
        df = df.assign(outputs=df["n"].map(lambda n: shapes[int(n)][0]),
                       n_inputs=df["n"].map(lambda n: shapes[int(n)][1]))
        parts.append(df)
    if not parts:
        return pd.DataFrame(columns=JACOBIAN_SCALE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[JACOBIAN_SCALE_COLUMNS]


def _past_floor(part: pd.DataFrame) -> pd.DataFrame:
    """The rows of one method/variant/device to fit: the run of largest sizes whose times are all at least
    ``FLOOR_FACTOR`` times the smallest time measured. The floor is the smallest time, not the smallest size's:
    on a loaded machine one slow small size would otherwise lower the floor's bar for the rest, and a size in
    the middle that is back at the floor would enter the fit."""
    part = part[(part["status"] == Status.OK) & part["time_median_s"].notna() & (part["time_median_s"] > 0)]
    part = part.sort_values("n")
    if not len(part):
        return part
    bar = FLOOR_FACTOR * float(part["time_median_s"].min())
    keep = len(part)
    while keep > 0 and float(part["time_median_s"].iloc[keep - 1]) >= bar:
        keep -= 1
    # rows below the fitted run become "floor" rows for :func:`slopes` by carrying the smallest time
    tail = part.iloc[keep:]
    head = part.iloc[:keep].assign(time_median_s=float(part["time_median_s"].min()))
    return pd.concat([head, tail]).sort_values("n")


def jacobian_slopes(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`diffbench.report.slopes` per case: the log-log slope of the time per Jacobian against n for each
    case and method/variant/device, fitted over the largest sizes past the fixed-overhead floor
    (:func:`_past_floor`)."""
    parts = []
    for name, part in df.groupby("case", sort=False):
        fitted = [_past_floor(one) for _, one in part.groupby(["method", "variant", "device"], sort=False)]
        fitted = [one for one in fitted if len(one)]
        if fitted:
            parts.append(slopes(pd.concat(fitted, ignore_index=True)).assign(case=name))
    columns = ["case", "method", "variant", "device", "slope", "sizes", "floor"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def render_jacobians(df: pd.DataFrame, slope_table: pd.DataFrame, images: list[str]) -> str:
    """The markdown report of :func:`jacobian_study`: per case, the time per Jacobian by n and method, the
    shape m × N at each n, the slopes, and what was not measured."""
    lines = ["# Scaling of Jacobians", "",
             "Median seconds per whole Jacobian by size n (CPU unless a device is named). Reverse mode (`tape/eager`, "
             "`tape/function`: tape.jacobian vectorised by pfor) costs about m vector-Jacobian products, forward mode "
             "(`tape/forward`) and central differences (`finite/central`) about N products or columns, so their "
             "slopes differ as the shapes m × N differ.", ""]
    for name, part in df.groupby("case", sort=False):
        table = part.assign(label=part["method"] + "/" + part["variant"]
                            + part["device"].map(lambda d: "" if d == "CPU" else f" {d}"),
                            cell=part.apply(lambda r: format_seconds(r["time_median_s"]) if r["status"] == Status.OK
                                            else r["status"], axis=1))
        pivot = table.pivot_table(index="n", columns="label", values="cell", aggfunc="first", sort=False)
        shape = part.drop_duplicates("n").set_index("n")
        pivot.insert(0, "m × N", [f"{int(shape.loc[n, 'outputs'])} × {int(shape.loc[n, 'n_inputs'])}"
                                  for n in pivot.index])
        lines += [f"## {md(name)}", "", pivot.fillna("").to_markdown(), ""]
        own = slope_table[slope_table["case"] == name].drop(columns=["case"])
        if len(own):
            lines += ["Log-log slopes of time against n (fitted over the largest sizes whose times are all at least "
                      f"{FLOOR_FACTOR:g}× the smallest time measured; `floor` lists those left out):", "",
                      own.to_markdown(index=False, floatfmt=".2f"), ""]
        lines += _not_measured(part)
    lines += [f"![{md(Path(i).stem)}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def write_jacobian_study(cases: list[Case], sizes: list[int], methods: list[str], out: Path,
                         dtype: str = "float64", budget_s: float = 20.0, profile: str = "quick",
                         progress: Callable[[str], None] | None = None,
                         max_entries: int = MAX_JACOBIAN_ENTRIES) -> Path:
    """Run :func:`jacobian_study` (each size in a separate process, stopped at the budget) and write scale.csv,
    report.md and a time plot per case into ``out``; return the report's path."""
    df = jacobian_study(cases, sizes, methods, dtype, budget_s, profile, progress=progress, isolate=True,
                        max_entries=max_entries)
    slope_table = jacobian_slopes(df)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "scale.csv", for_csv(df).to_csv(index=False))
    images, failed = [], ""
    for name, part in df.groupby("case", sort=False):
        try:
            images += [str(p.relative_to(out)) for p in plots(part, out / "plots", str(name), what="Jacobian")]
        except Exception as exc:  # noqa: BLE001 - the numbers matter more than their picture
            failed += f"\nThe plots of {md(name)} could not be drawn ({type(exc).__name__}: {md(exc)}).\n"
    atomic_write(out / "report.md", render_jacobians(df, slope_table, images) + failed)
    return out / "report.md"


def _not_measured(df: pd.DataFrame) -> list[str]:
    """Markdown lines naming, per variant, the first size it missed and why (none where every size was measured)."""
    notes = df[df["status"] != Status.OK].drop_duplicates(["method", "variant", "device"])
    if not len(notes):
        return []
    return ["Not measured (the first size each variant missed, and why):", ""] + [
        f"- {r['method']}/{r['variant']} from n = {r['n']}: `{r['status']}` — {md(r['diagnosis'])}"
        for _, r in notes.iterrows()] + [""]
