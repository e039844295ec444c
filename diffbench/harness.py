"""The measurement loop: for each case × method × variant × dtype × device, one row.

``measure_case`` does the work for one case in the current process and hands each
row to a callback as soon as it is complete. ``run`` calls it for a list of cases in
process (the Python API); ``diffbench.runner`` calls it in worker processes so that a
hanging or crashing case cannot take a run down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .case import Case
from .diagnose import judge
from .engines import DEFAULT_METHODS, NoGradient, Skip, flatten, get_engine
from .errors import UnitTimeout
from .namespaces import UnsupportedFunction
from .timing import PROFILES, measure

#: result columns, in order (documented in reports/README.md)
COLUMNS = ["case", "method", "variant", "dtype", "device", "order", "status", "expected", "rel_error",
           "max_error_eps", "taylor_order", "error_estimate", "time_median_s", "time_iqr_s", "time_min_s",
           "repeats", "loops", "unstable", "prepare_s", "f_time_s", "grad_over_f", "reference", "diagnosis",
           "step", "expr_ops", "grad_ops", "n_inputs", "tags", "source_hash", "time_samples_s"]
KEY = ("case", "method", "variant", "dtype", "device", "order")

#: second-order rows are computed for cases with at most this many scalar inputs
ORDER2_MAX_INPUTS = 8
#: the variant that carries second-order rows for each method
ORDER2_VARIANT = {"symbolic": "numpy", "tape": "eager", "finite": "central", "jax": "jit", "torch": "eager"}
DEFAULT_DTYPES = ("float32", "float64")
DEFAULT_TIMEOUT_S = 120.0
#: prefix of a reference failure caused by the case itself (it raised, or returned a non-scalar)
CASE_ERROR = "the case fails when evaluated for the reference: "


@dataclass
class Config:
    """What to measure and how hard to try."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    profile: str = "quick"
    order2: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    timing: bool = True
    devices: tuple[str, ...] | None = None
    keep_gradients: bool = False
    sweep: bool = True

    def variants_of(self, method: str) -> tuple[str, ...]:
        return self.variants.get(method) or get_engine(method).variants()


#: how long an expired budget waits, each time, for an import in progress to finish
IMPORT_DEFER_S = 0.05


def _importing(frame: Any) -> bool:
    """Whether ``frame`` or a caller is running inside the import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    """Raise UnitTimeout in this thread after ``seconds`` (main thread only; elsewhere a no-op).

    Python code (a SymPy blow-up, a slow loop) is interrupted; a long native call is
    interrupted when it returns. An import in progress is never interrupted: a module cut
    short halfway (TensorFlow registering its types) would break every later use of it in
    this process, so the timeout is raised just after the import completes. For the
    in-process API only: worker processes run without it and their parent stops them.
    """
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        if _importing(frame):
            signal.setitimer(signal.ITIMER_REAL, IMPORT_DEFER_S)
            return
        raise UnitTimeout(f"ran past the time budget of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _warm_up_function(x: Any, xp: Any) -> Any:
    return xp.sum(x * x) + xp.exp(x[0])


#: (method, variant, dtype, device, order) already warmed up in this process
_warmed: set[tuple[str, str, str, str, int]] = set()


def warm_up(config: Config) -> None:
    """Import and use once every engine variant ``config`` needs, on a tiny throwaway case.

    A framework's import and first use (TensorFlow: seconds) then count against no
    measurement's budget, and no budget is ever armed around them. Done once per process
    and variant; any failure is ignored here (the real measurement reports it).
    """
    from . import reference as reference_module
    from .case import make_case

    probe = make_case(_warm_up_function, {"x": [0.5, 1.5]}, name="diffbench_warm_up")
    if ("reference", "", "", "", 1) not in _warmed:
        _warmed.add(("reference", "", "", "", 1))
        with contextlib.suppress(Exception):
            reference_module.reference(probe)
    devices = engine_devices(config)
    for method in config.methods:
        try:
            engine = get_engine(method)
            variants = config.variants_of(method)
        except Exception:  # noqa: BLE001 - reported per row when the engine is used
            continue
        for dtype in config.dtypes:
            for variant in variants:
                for device in devices.get(method, ["CPU"]):  # a GPU's first use costs seconds too
                    if (method, variant, dtype, device, 1) in _warmed:
                        continue
                    _warmed.add((method, variant, dtype, device, 1))
                    with contextlib.suppress(Exception), np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        prepared = engine.prepare(probe, variant, dtype, device)
                        prepared.gradient()
                        prepared.timed()
            second = ORDER2_VARIANT.get(method)
            if config.order2 and second in variants and (method, second, dtype, "CPU", 2) not in _warmed:
                _warmed.add((method, second, dtype, "CPU", 2))
                with contextlib.suppress(Exception), np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    engine.hessian(probe, second, dtype)


def _row(case: Case, method: str, variant: str, dtype: str, device: str, order: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(case=case.name, method=method, variant=variant, dtype=dtype, device=device, order=order,
               n_inputs=case.size, tags=",".join(case.tags), source_hash=case.source_hash if case.func else "",
               expected=case.expected_status(method, variant, dtype, order))
    row.update(values)
    return row


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (Skip, NoGradient, UnitTimeout)):
        return text
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/diffbench/" not in f.filename.replace("\\", "/")]
    where = f" (at {frames[-1].filename.split('/')[-1]}:{frames[-1].lineno}: `{(frames[-1].line or '').strip()}`)" \
        if frames else ""
    return f"{type(exc).__name__}: {text}{where}"


def key_of(row: dict[str, Any]) -> tuple[Any, ...]:
    """The identity of a row: (case, method, variant, dtype, device, order)."""
    return tuple(row[k] for k in KEY)


def plan(case: Case, config: Config, devices: dict[str, list[str]]) -> list[tuple[str, str, str, str, int]]:
    """Every (method, variant, dtype, device, order) unit a case gets under ``config``."""
    units = []
    for dtype in config.dtypes:
        for method in config.methods:
            for variant in config.variants_of(method):
                for device in devices.get(method, ["CPU"]):
                    units.append((method, variant, dtype, device, 1))
    if config.order2 and case.size <= ORDER2_MAX_INPUTS:
        for dtype in config.dtypes:
            for method in config.methods:
                if method in ORDER2_VARIANT and ORDER2_VARIANT[method] in config.variants_of(method):
                    units.append((method, ORDER2_VARIANT[method], dtype, "CPU", 2))
    return units


def engine_devices(config: Config) -> dict[str, list[str]]:
    """The devices each configured method runs on here (an engine that fails to load gets CPU)."""
    out = {}
    for method in config.methods:
        try:
            found = get_engine(method).devices()
        except Exception:  # noqa: BLE001 - reported per row when the engine is used
            found = ["CPU"]
        out[method] = [d for d in found if config.devices is None or d in config.devices or
                       (d.startswith("GPU") and "GPU" in config.devices)] or ["CPU"]
    return out


def measure_case(case: Case, config: Config, emit: Callable[[dict[str, Any]], None], *,
                 skip: Iterable[tuple[Any, ...]] = (), on_start: Callable[[tuple[Any, ...]], None] | None = None,
                 reference_problem: str | None = None, failed: dict[str, tuple[str, str]] | None = None,
                 keep_gradients: bool = False) -> None:
    """Measure every unit of ``case``; call ``emit(row)`` as each row completes. Never raises
    for a problem of the case: it becomes a row.

    ``skip`` holds row keys already measured; ``failed`` maps a method to (status, reason)
    when an earlier attempt at it hung or crashed, so its remaining units are reported
    without being run again.
    """
    if keep_gradients:
        config = dataclasses.replace(config, keep_gradients=True)
    skip = set(skip)
    if case.problem or case.func is None:
        row = _row(case, "case", "load", "-", "-", 1, status="error", diagnosis=case.problem or "no function")
        if key_of(row) not in skip:
            emit(row)
        return
    if config.timeout_s:
        warm_up(config)  # before any budget is armed: imports and first uses are not measurements
    devices = engine_devices(config)
    units = plan(case, config, devices)
    refs: dict[str, Any] = {}
    notes: dict[str, str | None] = {}
    unsupported = []
    for dtype in config.dtypes:
        if reference_problem is not None:
            refs[dtype], notes[dtype] = None, reference_problem
            continue
        if on_start:
            on_start((case.name, "reference", "", dtype, "", 1))
        refs[dtype], notes[dtype], failure = _reference_for(case, dtype, config.timeout_s)
        unsupported.append(isinstance(failure, UnsupportedFunction))
    if unsupported and all(unsupported):
        # a name the namespaces lack fails every row alike: say it once, for the case
        row = _row(case, "case", "namespace", "-", "-", 1, status="error", diagnosis=notes[config.dtypes[0]])
        if key_of(row) not in skip:
            emit(row)
        return
    timed_out: dict[str, tuple[str, str]] = dict(failed or {})
    f_times: dict[tuple[Any, ...], float] = {}  # variants that evaluate the same function share its timing
    for method, variant, dtype, device, order in units:
        key = (case.name, method, variant, dtype, device, order)
        if key in skip:
            continue
        if method in timed_out:
            status, reason = timed_out[method]
            emit(_row(case, method, variant, dtype, device, order, status=status, diagnosis=f"not run: {reason}"))
            continue
        if on_start:
            on_start(key)
        try:
            with budget(config.timeout_s), np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                row = (_measure_unit if order == 1 else _measure_order2)(case, config, method, variant, dtype,
                                                                          device, refs.get(dtype), notes.get(dtype),
                                                                          f_times)
        except UnitTimeout as exc:
            row = _row(case, method, variant, dtype, device, order, status="timeout",
                       diagnosis=f"{method}/{variant} {exc}; raise --timeout or shrink the case")
            timed_out[method] = ("timeout", f"{method}/{variant} in {dtype} ran past the time budget of "
                                            f"{config.timeout_s:g} s")
        emit(row)
    ref = next((r for r in refs.values() if r is not None), None)
    if config.sweep and "sweep" in case.tags and ref is not None and not ref.undefined and "finite" in config.methods:
        if on_start:
            on_start((case.name, "sweep", "", "", "", 1))
        for row in _sweep_rows(case, config, refs, skip):
            emit(row)


def _reference_for(case: Case, dtype: str, timeout_s: float | None
                   ) -> tuple[Any, str | None, BaseException | None]:
    """The certified reference for ``dtype``, or (None, why not, the exception)."""
    from . import reference as reference_module

    try:
        with budget(timeout_s):
            return reference_module.reference(case, dtype), None, None
    except UnitTimeout as exc:
        return None, f"the certified reference ran past the time budget of {timeout_s:g} s", exc
    except reference_module.ReferenceUnavailable as exc:
        return None, str(exc), exc
    except Exception as exc:  # noqa: BLE001 - the case itself fails: every row of it is an error
        return None, CASE_ERROR + _message(exc), exc


def _sweep_rows(case: Case, config: Config, refs: dict[str, Any], skip: set[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Error against step size for forward and central differences (the report's V plot)."""
    from .engines import finite

    rows = []
    for dtype in config.dtypes:
        ref = refs.get(dtype)
        if ref is None or ref.undefined:
            continue
        ref_flat = flatten(ref.values, list(case.inputs))
        for scheme in ("forward", "central"):
            try:
                with budget(config.timeout_s):
                    scales, errs = finite.sweep(case, dtype, scheme, ref_flat)
            except Exception:  # noqa: BLE001 - the sweep is illustration; its absence is not a failure
                continue
            for k, (c, err) in enumerate(zip(scales, errs)):
                row = _row(case, "sweep", f"{scheme}-{k:02d}", dtype, "CPU", 1, status="ok", rel_error=float(err),
                           step=float(c), reference=_reference_label(ref))
                if key_of(row) not in skip:
                    rows.append(row)
    return rows


def _reference_label(ref: Any) -> str:
    if ref is None:
        return "unavailable"
    return f"mpmath-tape-{ref.digits}" + ("-uncertain" if ref.uncertain else "")


def _measure_unit(case: Case, config: Config, method: str, variant: str, dtype: str, device: str, ref: Any,
                  ref_note: str | None, f_times: dict[tuple[Any, ...], float]) -> dict[str, Any]:
    from . import metrics

    base = dict(reference=_reference_label(ref))
    try:
        engine = get_engine(method)
    except ImportError as exc:
        return _row(case, method, variant, dtype, device, 1, status="skipped", **base,
                    diagnosis=f"the {method} engine needs a package that is not installed ({exc}); "
                              f"pip install -e \".[{method}]\"")
    try:
        prepared = engine.prepare(case, variant, dtype, device)
    except Skip as exc:
        return _row(case, method, variant, dtype, device, 1, status="skipped", diagnosis=str(exc), **base)
    except UnitTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken case or engine becomes an error row
        return _row(case, method, variant, dtype, device, 1, status="error", diagnosis=_message(exc), **base)
    values: dict[str, Any] = dict(base, prepare_s=prepared.prepare_s)
    info = dict(prepared.info)
    note = info.pop("note", None)
    values.update({k: v for k, v in info.items() if k in COLUMNS})
    gradient: dict[str, np.ndarray] | None = None
    try:
        with np.errstate(all="ignore"):
            gradient = prepared.gradient()
    except NoGradient as exc:
        if ref is not None and ref.undefined:
            # the gradient does not exist here: that, not TensorFlow's None, is what the row says
            values.update(status="undefined", diagnosis=f"the true gradient does not exist here: {ref.undefined}; "
                                                        f"TensorFlow returned None for {', '.join(exc.inputs)}")
        else:
            values.update(status="none", diagnosis=_none_diagnosis(case, exc, ref))
    except UnitTimeout:
        raise
    except Exception as exc:  # noqa: BLE001
        return _row(case, method, variant, dtype, device, 1, status="error", diagnosis=_message(exc), **values)
    if config.timing:
        with np.errstate(all="ignore"):
            try:
                profile = PROFILES[config.profile]
                timing = measure(prepared.timed, profile)
                values.update(timing.as_row())
                if prepared.f_timed is not None:
                    shared = (method, prepared.f_key or variant, dtype, device)
                    if shared not in f_times:
                        f_times[shared] = measure(prepared.f_timed, profile).median_s
                    values["f_time_s"] = f_times[shared]
                    if values["f_time_s"] > 0:
                        values["grad_over_f"] = timing.median_s / values["f_time_s"]
                unstable_note = prepared.check_stable() if prepared.check_stable else None
                if unstable_note:
                    values["unstable"] = True
                    note = f"{note}; {unstable_note}" if note else unstable_note
            except UnitTimeout:
                raise
            except Exception as exc:  # noqa: BLE001 - a failure while timing is still an error row
                return _row(case, method, variant, dtype, device, 1, status="error", diagnosis=_message(exc), **values)
    if gradient is None:
        return _row(case, method, variant, dtype, device, 1, **values)
    if config.keep_gradients:
        values["gradient"] = gradient
    flat = flatten(gradient, list(case.inputs))
    if ref is None:
        status, rel, max_eps = metrics.classify(flat, None, method, variant, dtype)
        if ref_note and ref_note.startswith(CASE_ERROR):
            values.update(status="error", diagnosis=ref_note)
            return _row(case, method, variant, dtype, device, 1, **values)
        if status == "ok":
            status = "skipped"
        values.update(status=status, rel_error=rel, max_error_eps=max_eps,
                      diagnosis=f"accuracy not checked: no reference gradient ({ref_note})")
        return _row(case, method, variant, dtype, device, 1, **values)
    verdict = judge(case, method, variant, dtype, flat, ref, step=values.get("step"))
    values.update(status=verdict.status, rel_error=verdict.rel_error, max_error_eps=verdict.max_error_eps,
                  diagnosis=verdict.diagnosis)
    if verdict.status not in ("nan", "inf", "undefined"):
        values["taylor_order"] = verdict.taylor_order
    if note:
        values["diagnosis"] = f"{values['diagnosis']}. Note: {note}" if values.get("diagnosis") else note
    return _row(case, method, variant, dtype, device, 1, **values)


def _none_diagnosis(case: Case, exc: NoGradient, ref: Any) -> str:
    text = str(exc)
    if ref is not None and not ref.undefined:
        truth = ", ".join(f"{name}: {np.array2string(ref.values[name], precision=6)}" for name in exc.inputs)
        text += f". The true gradient there is {truth}"
    return text


def _measure_order2(case: Case, config: Config, method: str, variant: str, dtype: str, device: str, ref: Any,
                    ref_note: str | None, f_times: dict[tuple[Any, ...], float] | None = None) -> dict[str, Any]:
    from . import reference as reference_module

    values: dict[str, Any] = {"reference": _reference_label(ref)}
    try:
        engine = get_engine(method)
        start = time.perf_counter()
        hess = engine.hessian(case, variant, dtype)
        values["prepare_s"] = time.perf_counter() - start
    except Skip as exc:
        return _row(case, method, variant, dtype, device, 2, status="skipped", diagnosis=str(exc), **values)
    except NoGradient as exc:
        if ref is not None and (ref.undefined or ref.order2_undefined):
            return _row(case, method, variant, dtype, device, 2, status="undefined",
                        diagnosis=f"the true Hessian does not exist here: {ref.undefined or ref.order2_undefined}",
                        **values)
        return _row(case, method, variant, dtype, device, 2, status="none", diagnosis=str(exc), **values)
    except UnitTimeout:
        raise
    except ImportError as exc:
        return _row(case, method, variant, dtype, device, 2, status="skipped", diagnosis=str(exc), **values)
    except Exception as exc:  # noqa: BLE001
        return _row(case, method, variant, dtype, device, 2, status="error", diagnosis=_message(exc), **values)
    if ref is None:
        status = "error" if ref_note and ref_note.startswith(CASE_ERROR) else "skipped"
        return _row(case, method, variant, dtype, device, 2, status=status,
                    diagnosis=ref_note if status == "error" else f"accuracy not checked: no reference ({ref_note})",
                    **values)
    if ref.undefined or ref.order2_undefined:
        verdict = judge(case, method, variant, dtype, hess, ref, order=2)
        return _row(case, method, variant, dtype, device, 2, status=verdict.status, diagnosis=verdict.diagnosis,
                    **values)
    try:
        ref_hess = reference_module.reference_hessian(case, dtype)
    except Exception as exc:  # noqa: BLE001
        return _row(case, method, variant, dtype, device, 2, status="skipped",
                    diagnosis=f"accuracy not checked: no reference Hessian ({_message(exc)})", **values)
    verdict = judge(case, method, variant, dtype, hess, ref, order=2, reference_hessian=ref_hess)
    values.update(status=verdict.status, rel_error=verdict.rel_error, max_error_eps=verdict.max_error_eps,
                  diagnosis=verdict.diagnosis)
    return _row(case, method, variant, dtype, device, 2, **values)


def run(cases: Sequence[Case], methods: Sequence[str] | None = None, dtypes: Sequence[str] | None = None, *,
        variants: dict[str, Sequence[str]] | None = None, profile: str = "quick", order2: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S, timing: bool = True,
        on_row: Callable[[dict[str, Any]], None] | None = None) -> "Any":
    """Measure ``cases`` in this process and return the tidy results DataFrame.

    ``methods`` defaults to symbolic, tape and finite; ``dtypes`` to float32 and
    float64; ``variants`` maps a method to the variants to run (default: all).
    ``timeout`` is the budget per measurement in seconds (enforced with a timer signal
    in the main thread). Problems of a case become rows; nothing here raises for them.
    Raises KeyError for an unknown method, ValueError for an unknown dtype or profile.
    """
    import pandas as pd

    config = make_config(methods, dtypes, variants, profile, order2, timeout, timing)
    rows: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row:
            on_row(row)

    for one in cases:
        measure_case(one, config, keep)
    return finish(pd.DataFrame(rows, columns=COLUMNS))


def make_config(methods: Sequence[str] | None, dtypes: Sequence[str] | None,
                variants: dict[str, Sequence[str]] | None, profile: str = "quick", order2: bool = True,
                timeout: float | None = DEFAULT_TIMEOUT_S, timing: bool = True) -> Config:
    """Validate options and build a Config (raises KeyError/ValueError naming the bad option)."""
    from .engines import REGISTRY

    methods = tuple(methods or DEFAULT_METHODS)
    for method in methods:
        if method not in REGISTRY:
            raise KeyError(f"unknown method {method!r}; known methods: {', '.join(REGISTRY)}")
    dtypes = tuple(dtypes or DEFAULT_DTYPES)
    for dtype in dtypes:
        if dtype not in ("float32", "float64"):
            raise ValueError(f"unknown dtype {dtype!r}; use float32 and/or float64")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    for method, names in (variants or {}).items():
        if method not in REGISTRY:
            raise KeyError(f"unknown method {method!r} in --variants; known methods: {', '.join(REGISTRY)}")
        try:
            known = get_engine(method).variants()
        except ImportError:
            continue  # an optional engine that is not installed: its rows say so
        unknown = [v for v in names if v not in known]
        if unknown:
            raise ValueError(f"unknown {method} variant(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return Config(methods=methods, dtypes=dtypes, variants={k: tuple(v) for k, v in (variants or {}).items()},
                  profile=profile, order2=order2, timeout_s=timeout or 0.0, timing=timing)


def finish(df: "Any") -> "Any":
    """Add the cross-row note to a results table: a float32 failure whose float64 twin is ok."""
    if df.empty:
        return df
    df = df.copy()
    for index, row in df[(df["status"] == "inaccurate") & (df["dtype"] == "float32")].iterrows():
        twin = df[(df["case"] == row["case"]) & (df["method"] == row["method"]) & (df["variant"] == row["variant"])
                  & (df["dtype"] == "float64") & (df["order"] == row["order"]) & (df["device"] == row["device"])]
        if len(twin) and twin.iloc[0]["status"] == "ok" and "float64" not in str(row["diagnosis"]):
            df.at[index, "diagnosis"] = f"{row['diagnosis']}. In float64 the same method is ok " \
                                        f"(relative error {twin.iloc[0]['rel_error']:.2g})"
    return df


def _isnan(value: Any) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def measure_one(case: Case, method: str, variant: str, dtype: str, *, timeout: float | None = DEFAULT_TIMEOUT_S,
                timing: bool = False) -> dict[str, Any]:
    """The result row of one (method, variant, dtype) on the CPU, order 1, measured in process."""
    config = make_config([method], [dtype], {method: [variant]}, order2=False, timeout=timeout, timing=timing)
    config.devices, config.sweep = ("CPU",), False
    rows: list[dict[str, Any]] = []
    measure_case(case, config, rows.append)
    return rows[0]
