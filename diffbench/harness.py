"""The measurement loop: for each case × method × variant × dtype × device, one row.

``measure_case`` does the work for one case in the current process and hands each
row to a callback as soon as it is complete. ``run`` calls it for a list of cases in
process (the Python API); ``diffbench.runner`` calls it in worker processes so that a
hanging or crashing case cannot take a run down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import signal
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .alarm import alarm
from .case import Case, source_changed
from .diagnose import judge
from .engines import (NoGradient, Prepared, Skip, configure, default_methods, engine_info, flatten, flatten_jacobian,
                      get_engine, output_shape, output_size)
from .errors import UnitTimeout
from .namespaces import UnsupportedFunction
from .results import PRODUCT_VARIANTS, COLUMNS, FD_CAUSES, KEY, Cause, Missing, Row, Status, as_record, case_note, row_of, sweep_point
from .timing import PROFILES, Timing, measure_interleaved, paired_ratio

DEFAULT_DTYPES = ("float32", "float64")
DEFAULT_TIMEOUT_S = 120.0
#: the certified reference is formed for at most this many inputs: its tape of mpmath values costs
#: 0.3 s at 10³ inputs, 2 s at 10⁴ and 33 s at 10⁵ for ``sum(exp(x)*x)`` (more for richer cases),
#: so past this it would spend the whole --timeout; rows past it are ``skipped``, not judged
REFERENCE_MAX_INPUTS = 50_000
#: how a reference failure caused by the case itself (it raised, or returned a non-scalar) begins
CASE_ERROR = "the case fails when evaluated for the reference: "
#: a full Jacobian (every method's, and the reference's) is formed for at most this many entries m·N; past it
#: a vector case's full-Jacobian rows are ``skipped`` and only its JVP/VJP product rows are measured
FULL_JACOBIAN_LIMIT = 250_000


@dataclass(frozen=True)
class Config:
    """What to measure and how hard to try (immutable: derive a changed one with ``dataclasses.replace``
    or the keyword options of :func:`make_config`)."""

    methods: tuple[str, ...] = field(default_factory=default_methods)
    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    profile: str = "quick"
    order2: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    timing: bool = True
    devices: tuple[str, ...] | None = None
    keep_gradients: bool = False
    sweep: bool = True
    #: method -> {option: value} for the options engines declare (``EngineInfo.options``)
    engine_options: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the memory budget of each worker process in bytes (``--memory``); None: the runner's default
    #: (``diffbench.runner.default_memory``); 0: no budget. The in-process API sets none.
    memory_bytes: int | None = None
    #: the per-measurement budget a worker's parent enforces from outside (a worker runs with ``timeout_s`` 0, no
    #: timer of its own); what predicted-cost checks hold a cost against (:attr:`budget_s`)
    enforced_s: float | None = None

    @property
    def budget_s(self) -> float | None:
        """Seconds one measurement may take, enforced here (``timeout_s``) or by a parent process; None: no limit."""
        return self.timeout_s or self.enforced_s or None

    def variants_of(self, method: str) -> tuple[str, ...]:
        try:
            return self.variants.get(method) or get_engine(method).variants()
        except ImportError:  # an optional engine that is not installed: its declared variants, each a row saying so
            return engine_info(method).variants


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

    def expire(signum: int, frame: Any) -> None:
        if _importing(frame):
            signal.setitimer(signal.ITIMER_REAL, IMPORT_DEFER_S)
            return
        raise UnitTimeout(f"ran past the time budget of {seconds:g} s")

    with alarm(seconds, expire):
        yield


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
            for second in engine.info.order2_variants:
                if config.order2 and second in variants and (method, second, dtype, "CPU", 2) not in _warmed:
                    _warmed.add((method, second, dtype, "CPU", 2))
                    with contextlib.suppress(Exception), np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        engine.hessian(probe, second, dtype)


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (Skip, NoGradient, UnitTimeout)):
        return text
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/diffbench/" not in f.filename.replace("\\", "/")]
    where = f" (at {frames[-1].filename.split('/')[-1]}:{frames[-1].lineno}: `{(frames[-1].line or '').strip()}`)" \
        if frames else ""
    if isinstance(exc, SystemExit):
        return f"the case raised SystemExit (sys.exit({exc.code!r})){where}; a case must return its value, not exit"
    return f"{type(exc).__name__}: {text}{where}"


def key_of(row: dict[str, Any]) -> tuple[Any, ...]:
    """The identity of a row: (case, method, variant, dtype, device, order)."""
    return tuple(row[k] for k in KEY)


def plan(case: Case, config: Config, devices: dict[str, list[str]]) -> list[tuple[str, str, str, str, int]]:
    """Every (method, variant, dtype, device, order) unit a case gets under ``config``.

    A scalar case gets no unit of the variants engines declare for vector outputs only
    (``EngineInfo.jacobian_variants``: Jacobian formulations, JVP/VJP products), and a vector case no order-2
    unit; a variant that needs a case tag (``EngineInfo.tag_variants``: tape ``batch``) is planned only for
    cases with that tag. Whether the case returns an
    array is read from its output's shape as found before (``diffbench.engines.output_shape``, cached on the
    case; ``measure_case`` finds it first): ``plan`` never runs the case's code itself, so a process that must
    not (the parent of a run's workers, counting rows for the progress bar) plans a case not yet looked at
    as scalar."""
    units = []
    vector = bool(case.__dict__.get("_output_shape"))
    for dtype in config.dtypes:
        for method in config.methods:
            only_vector = () if vector else _jacobian_variants(method)
            needs_tag = _tag_variants(method)
            for variant in config.variants_of(method):
                if variant in only_vector or (variant in needs_tag and needs_tag[variant] not in case.tags):
                    continue
                for device in devices.get(method, ["CPU"]):
                    units.append((method, variant, dtype, device, 1))
    # every engine with a second-order variant gets its row (its budget may skip it); a vector case has none: its
    # second derivative would be a third-order tensor, which diffbench does not form
    if config.order2 and not vector:
        for dtype in config.dtypes:
            for method in config.methods:
                for second in _order2_variants(method):
                    if second in config.variants_of(method):
                        units.append((method, second, dtype, "CPU", 2))
    return units


def _jacobian_variants(method: str) -> tuple[str, ...]:
    try:
        return engine_info(method).jacobian_variants
    except Exception:  # noqa: BLE001 - an engine that cannot load declares nothing
        return ()


def _tag_variants(method: str) -> dict[str, str]:
    try:
        return engine_info(method).tag_variants
    except Exception:  # noqa: BLE001 - an engine that cannot load declares nothing
        return {}


def full_jacobian_refusal(case: Case) -> str | None:
    """Why ``case``'s full Jacobian is not formed (too many entries, or too many output rows for the certified
    reference), or None where it is; only its JVP/VJP products are measured then."""
    from .reference import MAX_REFERENCE_OUTPUTS

    if not output_shape(case):
        return None
    m = output_size(case)
    if m * case.size > FULL_JACOBIAN_LIMIT:
        return (f"the full Jacobian has {m}×{case.size} = {m * case.size} entries, past the budget of "
                f"{FULL_JACOBIAN_LIMIT} (diffbench.harness.FULL_JACOBIAN_LIMIT); its JVP/VJP products are measured")
    if m > MAX_REFERENCE_OUTPUTS:
        return (f"{m} output components exceed the certified Jacobian's budget of {MAX_REFERENCE_OUTPUTS} output "
                "rows (diffbench.reference.MAX_REFERENCE_OUTPUTS); its JVP/VJP products are measured")
    return None


def _order2_variants(method: str) -> tuple[str, ...]:
    try:
        return engine_info(method).order2_variants
    except Exception:  # noqa: BLE001 - an engine that cannot load gets its rows (and their errors) at order 1
        return ()


def _configure(config: Config) -> None:
    """Set each configured engine's declared options to what ``config`` chose (defaults otherwise)."""
    for method in config.methods:
        with contextlib.suppress(ImportError, KeyError):
            configure(method, config.engine_options.get(method, {}))


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
                 reference_problem: Missing | None = None, failed: dict[Any, tuple[str, ...]] | None = None,
                 keep_gradients: bool = False, on_measured: Callable[[dict[str, Any]], None] | None = None,
                 baseline: dict[str, Any] | None = None, hessians: dict[str, tuple[bool, Any]] | None = None,
                 on_hessian: Callable[[str, bool, Any], None] | None = None) -> None:
    """Measure every unit of ``case``; call ``emit(row)`` as each row completes. Never raises
    for a problem of the case: it becomes a row.

    The certified reference Hessian of a dtype is formed before the first second-order unit, as a measurement of
    its own (its ``start`` key is the reference's with order 2), and handed to ``on_hessian(dtype, ok, value)``:
    the matrix, or (``ok`` false) why there is none. ``hessians`` maps a dtype to one settled earlier (in a worker
    that was stopped since), which is used instead of forming it again.

    ``skip`` holds row keys already measured; ``failed`` maps a method, a (method, variant), a (method, variant, order)
    or ``"*"`` (every method) to (status, reason[, cause]) when an earlier attempt hung or crashed,
    so those units are reported without being run again. ``on_measured`` receives each
    unit's row as soon as its accuracy is judged, before the case's timings are taken (a
    worker's parent keeps it in case the worker dies before the timed row is emitted).
    ``baseline`` holds the process-wide switches (:func:`diffbench.isolation.capture`) the
    case must find and leave; by default those at the start of the measurement. Every switch
    the case changes is set back after each unit and named on the case's rows.
    """
    from . import isolation

    if keep_gradients:
        config = dataclasses.replace(config, keep_gradients=True)
    skip = set(skip)
    if case.problem or case.func is None:
        row = case_note(case, "load", case.problem or "no function")
        if key_of(row) not in skip:
            emit(row)
        return
    if config.timeout_s:
        warm_up(config)  # before any budget is armed: imports and first uses are not measurements
    _configure(config)
    from . import reference as reference_module

    for dtype, (ok, value) in (hessians or {}).items():
        reference_module.remember_hessian(case, dtype, ok, value)
    if baseline is None:
        baseline = isolation.capture()
    changed = isolation.restore(baseline)  # left by loading the case's file, in a worker

    def reset() -> None:
        changed.extend(isolation.restore(baseline))
        for name, value in isolation.capture().items():  # a framework the case's units imported
            baseline.setdefault(name, value)

    def finish_row(row: Any) -> Any:
        notes = []
        if changed:
            notes.append(isolation.state_note(changed))
        if source_changed(case):
            notes.append(f"{case.source_file} changed after the run loaded it (while this case was measured, or "
                         "before its worker read it): this row was measured with the file as its worker read it, which may be "
                         "the edited version; re-run once the file is settled")
        for note in notes:
            text = row["diagnosis"]
            row["diagnosis"] = f"{text}. Note: {note}" if text else note
        return row

    devices = engine_devices(config)
    refs: dict[str, Any] = {}
    notes: dict[str, Missing | None] = {}
    unsupported = []
    # a case that ended its worker (os._exit) is not evaluated again: that would end this one too
    doomed = "*" in (failed or {})
    if doomed:
        case.__dict__.setdefault("_output_shape", ())  # its rows say why it was not run; its shape is not looked for
    for dtype in config.dtypes:
        if reference_problem is not None or doomed:
            refs[dtype], notes[dtype] = None, reference_problem
            continue
        if on_start:
            on_start((case.name, "reference", "", dtype, "", 1))
        refs[dtype], notes[dtype], failure = _reference_for(case, dtype, config.timeout_s)
        unsupported.append(isinstance(failure, UnsupportedFunction))
        reset()
    if unsupported and all(unsupported):
        # a name the namespaces lack fails every row alike: say it once, for the case
        row = case_note(case, "namespace", str(notes[config.dtypes[0]]), Cause.NOT_APPLICABLE)
        if key_of(row) not in skip:
            emit(finish_row(row))
        return
    inputs_key = key_of(case_note(case, "inputs", ""))
    if not doomed and inputs_key not in skip:
        if on_start:
            on_start(inputs_key)  # a worker that dies here is the case's doing, not an engine's
        _find_output_shape(case, config)  # one NumPy evaluation, charged to the case like the input check
        mutated = isolation.mutated_inputs(case)
        reset()
        if mutated:
            emit(finish_row(case_note(case, "inputs", isolation.mutation_note(mutated), Cause.MUTATES_INPUT)))
    if "_output_shape" not in case.__dict__:
        # neither the reference nor the input check ran here (done by an earlier worker): the first unit
        # still to run answers for the one NumPy evaluation that finds the output's shape
        earlier = failed or {}
        pending = [u for u in plan(case, config, devices) if (case.name, *u) not in skip
                   and (u[0], u[1], u[4]) not in earlier and (u[0], u[1]) not in earlier and u[0] not in earlier]
        if not pending:
            case.__dict__["_output_shape"] = ()  # nothing left to run: its shape is not looked for
        else:
            if on_start:
                on_start((case.name, *pending[0]))
            _find_output_shape(case, config)
            reset()
    vector = bool(output_shape(case))
    refused = full_jacobian_refusal(case)
    units = plan(case, config, devices)
    timed_out: dict[Any, tuple[str, ...]] = dict(failed or {})
    held: list[Measured] = []  # rows in plan order, emitted once the case's timings are in
    hessian_tried: set[str] = set()
    for method, variant, dtype, device, order in units:
        key = (case.name, method, variant, dtype, device, order)
        if key in skip:
            continue
        earlier = (timed_out.get((method, variant, order)) or timed_out.get((method, variant)) or timed_out.get(method)
                   or timed_out.get("*"))
        if earlier is not None:
            status, reason, *cause = earlier  # (status, reason) or (status, reason, cause)
            held.append(Measured(row_of(case, method, variant, dtype, device, order, status=status,
                                        diagnosis=f"not run: {reason}",
                                        cause=cause[0] if cause else
                                        Cause.TIME_BUDGET if status == Status.TIMEOUT else Cause.RAISED)))
            continue
        if order == 1 and refused and variant not in PRODUCT_VARIANTS:
            held.append(Measured(row_of(case, method, variant, dtype, device, order, status=Status.SKIPPED,
                                        diagnosis=refused, cause=Cause.NOT_APPLICABLE)))
            continue
        if order == 2 and dtype not in hessian_tried and (engine_info(method).max_hessian_inputs is None
                                                         or case.size <= engine_info(method).max_hessian_inputs):
            hessian_tried.add(dtype)
            if _form_reference_hessian(case, config, refs.get(dtype), dtype, on_start, on_hessian):
                reset()
        if on_start:
            on_start(key)
        unit = Unit(case, method, variant, dtype, device, order)
        try:
            with budget(config.timeout_s), np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                if order == 1:
                    held.append(_measure_unit(unit, config, refs.get(dtype), notes.get(dtype)))
                else:
                    held.append(Measured(_measure_order2(unit, config, refs.get(dtype), notes.get(dtype))))
        except SystemExit as exc:  # the case called sys.exit: its row says so, and the run goes on
            held.append(Measured(unit.error(exc)))
        except UnitTimeout as exc:
            held.append(Measured(_timeout_row(unit, exc)))
            # only this variant and order: another variant of the method (eager next to xla), or its gradient
            # next to a slow Hessian, may well finish
            timed_out[(method, variant, order)] = ("timeout", f"{method}/{variant} in {dtype} ran past the time budget "
                                                       f"of {config.timeout_s:g} s")
        reset()
        if on_measured is not None:
            on_measured(finish_row(held[-1].untimed_row()))
    if config.timing:
        _time_interleaved(case, held, config, on_start)
        reset()
    for measured in held:
        emit(finish_row(measured.finished()))
    ref = next((r for r in refs.values() if r is not None), None)
    if config.sweep and "sweep" in case.tags and ref is not None and not ref.undefined and "finite" in config.methods \
            and not vector:
        if on_start:
            on_start((case.name, "sweep", "", "", "", 1))
        for row in _sweep_rows(case, config, refs, skip):
            emit(row)
        reset()


def _form_reference_hessian(case: Case, config: Config, ref: Any, dtype: str,
                            on_start: Callable[[tuple[Any, ...]], None] | None,
                            on_hessian: Callable[[str, bool, Any], None] | None) -> bool:
    """Form the certified reference Hessian of ``case`` in ``dtype`` as a measurement of its own, before the
    second-order units that are judged against it, so that its cost (diffbench's, not a method's) is never
    charged to one of them; a Hessian predicted to take longer than the budget is not formed, and those rows
    say so. Returns whether anything ran."""
    from . import reference as reference_module

    if ref is None or ref.undefined or ref.order2_undefined or output_shape(case):
        return False  # nothing to form: each second-order row says why on its own
    if dtype in reference_module.known_hessians(case):
        return False  # settled earlier (in this process, or handed over from a stopped worker)
    if on_start:
        on_start((case.name, "reference", "", dtype, "", 2))
    try:
        with budget(config.timeout_s):
            reference_module.reference_hessian(case, dtype, budget_s=config.budget_s)
    except UnitTimeout:
        reference_module.remember_hessian(case, dtype, False, f"the certified reference Hessian ran past the time "
                                                             f"budget of {config.budget_s:g} s")
    except Exception:  # noqa: BLE001 - kept by reference_hessian; each row says why there is no reference Hessian
        pass
    if on_hessian:
        ok, value = reference_module.known_hessians(case)[dtype]
        on_hessian(dtype, ok, value)
    return True


def _find_output_shape(case: Case, config: Config) -> None:
    """Evaluate the case once in NumPy, within the unit budget, to find the shape of what it returns
    (``diffbench.engines.output_shape``, cached on the case); a case that raises or runs past the budget is
    taken as scalar, and its own error or timeout is every row's."""
    try:
        with budget(config.timeout_s), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output_shape(case)
    except UnitTimeout:
        case.__dict__["_output_shape"] = ()  # not looked for again: each unit's own budget says it hangs
    except SystemExit:  # the case calls sys.exit: planned as a scalar, and each of its rows says what it did
        case.__dict__["_output_shape"] = ()


def _reference_for(case: Case, dtype: str, timeout_s: float | None
                   ) -> tuple[Any, Missing | None, BaseException | None]:
    """The certified reference for ``dtype``, or (None, why not, the exception)."""
    from . import reference as reference_module

    if case.size > REFERENCE_MAX_INPUTS:
        return None, Missing(f"{case.size} inputs exceed the certified reference's budget of {REFERENCE_MAX_INPUTS} "
                             "inputs (diffbench.harness.REFERENCE_MAX_INPUTS)", Cause.NO_REFERENCE), None
    try:
        with budget(timeout_s):
            refused = full_jacobian_refusal(case)  # evaluates the case once (its output's shape): within the budget
            if refused:
                return None, Missing(refused, Cause.NO_REFERENCE), None
            if output_shape(case):
                return reference_module.reference_jacobian(case, dtype), None, None
            return reference_module.reference(case, dtype), None, None
    except UnitTimeout as exc:
        return None, Missing(f"the certified reference ran past the time budget of {timeout_s:g} s",
                             Cause.TIME_BUDGET), exc
    except reference_module.ReferenceUnavailable as exc:
        return None, Missing(str(exc), Cause.NO_REFERENCE), exc
    except MemoryError as exc:
        return None, Missing(f"the certified reference {memory_message(exc)}", Cause.MEMORY), exc
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the case itself fails: every row of it is an error
        return None, Missing(CASE_ERROR + _message(exc), Cause.CASE_FAILS), exc


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
                row = sweep_point(case, scheme, k, dtype, float(c), float(err), _reference_label(ref))
                if key_of(row) not in skip:
                    rows.append(row)
    return rows


def _reference_label(ref: Any) -> str:
    if ref is None:
        return "unavailable"
    return ref.label + ("-uncertain" if ref.uncertain else "")


@dataclass(frozen=True)
class Unit:
    """One measurement: a case under one method, variant, dtype, device and derivative order."""

    case: Case
    method: str
    variant: str
    dtype: str
    device: str
    order: int = 1

    def row(self, **values: Any) -> Row:
        return row_of(self.case, self.method, self.variant, self.dtype, self.device, self.order, **values)

    def error(self, exc: BaseException, **values: Any) -> Row:
        """The row of a unit that raised (cause ``memory`` for a MemoryError: the budget ran out)."""
        if isinstance(exc, MemoryError):
            return self.row(status=Status.ERROR, diagnosis=memory_message(exc), cause=Cause.MEMORY, **values)
        return self.row(status=Status.ERROR, diagnosis=_message(exc), cause=Cause.RAISED, **values)


def memory_limit() -> int | None:
    """The data-size limit (RLIMIT_DATA) this process runs under in bytes, or None when there is none."""
    try:
        import resource
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def memory_message(exc: BaseException) -> str:
    """The diagnosis of a unit that ran out of memory, naming the budget it ran under."""
    limit = memory_limit()
    where = (f"the worker's memory budget of {limit / 2**30:.3g} GiB (--memory)" if limit is not None
             else "the memory available")
    detail = str(exc).strip()
    return (f"ran out of memory: it needed more than {where}" + (f" ({detail})" if detail else "")
            + "; raise --memory, shrink the case or skip this method for it")


def _prepare(unit: Unit, base: dict[str, Any]) -> Any:
    """The engine's prepared gradient, or the row saying why there is none."""
    try:
        engine = get_engine(unit.method)
    except ImportError as exc:
        extra = engine_info(unit.method).extra or unit.method
        return unit.row(status=Status.SKIPPED, cause=Cause.NOT_APPLICABLE, **base,
                        diagnosis=f"the {unit.method} engine needs a package that is not installed ({exc}); "
                                  f"pip install -e \".[{extra}]\"")
    try:
        return engine.prepare(unit.case, unit.variant, unit.dtype, unit.device)
    except Skip as exc:
        return unit.row(status=Status.SKIPPED, diagnosis=str(exc), cause=Cause.NOT_APPLICABLE, **base)
    except UnitTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken case or engine becomes an error row
        return unit.error(exc, **base)


@dataclass
class Measured:
    """A unit's row, and what its timing needs: the prepared gradient (None: nothing to time), the
    values the row falls back to if timing fails, and a note for the diagnosis."""

    row: Row
    prepared: Prepared | None = None
    untimed: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    judged: bool = False

    def untimed_row(self) -> Row:
        """A copy of the row as it stands before timing, with the note, saying its time is not measured
        yet (what the run keeps if the worker dies before the case's timings are in)."""
        row = dataclasses.replace(self.row)
        parts = [self.note] if self.note and self.judged else []
        if self.prepared is not None:
            parts.append("its time was not measured: the worker stopped before the case's timings were taken")
        if parts:
            text = "; ".join(parts)
            row.diagnosis = f"{row.diagnosis}. Note: {text}" if row.diagnosis else text
        return row

    def timing_failed(self, row: Row) -> None:
        self.row, self.prepared, self.note = row, None, None

    def finished(self) -> Row:
        """The row, with the note appended to the diagnosis of a judged row."""
        if self.note and self.judged:
            text = self.row.diagnosis
            self.row.diagnosis = f"{text}. Note: {self.note}" if text else self.note
            self.note = None
        return self.row


def _timeout_row(unit: Unit, exc: BaseException) -> Row:
    return unit.row(status=Status.TIMEOUT, diagnosis=f"{unit.method}/{unit.variant} {exc}; raise --timeout or "
                                                      "shrink the case", cause=Cause.TIME_BUDGET)


def _time_interleaved(case: Case, held: list[Measured], config: Config,
                      on_start: Callable[[tuple[Any, ...]], None] | None) -> None:
    """Time every prepared gradient of the case, the functions they are compared with, and the case's
    NumPy function, all interleaved round-robin (``timing.measure_interleaved``), and fill in the
    timing columns with ratios taken sample by sample within each round, where drift cancels:
    ``grad_over_f`` (to the method's own function), ``time_over_f`` (to the case's NumPy function
    in the same dtype) and ``time_over_fastest`` (to the fastest exact method of the case in the same
    dtype and device). A unit whose timing raises or runs past its budget becomes an error or timeout
    row, and the others are timed again without it."""
    from .engines import finite

    fns: dict[tuple[Any, ...], Callable[[], Any]] = {}
    for i, measured in enumerate(held):
        prepared = measured.prepared
        if prepared is None:
            continue
        fns[("gradient", i)] = prepared.timed
        if prepared.f_timed is not None:
            fns.setdefault(_f_key(measured), prepared.f_timed)
    for dtype in dict.fromkeys(m.row.dtype for m in held if m.prepared is not None):
        with contextlib.suppress(Exception, SystemExit), np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f, x = finite.function_of(case, dtype), flatten(case.inputs, list(case.inputs)).astype(dtype)
            f(x)  # a case NumPy cannot evaluate has no such ratio
            fns[("case", dtype)] = functools.partial(f, x)

    @contextlib.contextmanager
    def around(key: tuple[Any, ...]) -> Iterator[None]:
        if key[0] == "gradient" and on_start:
            on_start(held[key[1]].row.key)
        with budget(config.timeout_s), np.errstate(all="ignore"):
            yield

    timings: dict[tuple[Any, ...], Timing] = {}
    while fns:
        try:
            timings = measure_interleaved(fns, PROFILES[config.profile], around)
            break
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - that unit becomes its row; the rest are timed again
            key = getattr(exc, "key", None)
            if key is None or key not in fns:
                raise
            del fns[key]
            if key[0] == "gradient":
                measured = held[key[1]]
                unit = Unit(case, *measured.row.key[1:])
                measured.timing_failed(_timeout_row(unit, exc) if isinstance(exc, UnitTimeout)
                                       else unit.error(exc, **measured.untimed))
    _timing_columns(held, timings)


def _f_key(measured: Measured) -> tuple[Any, ...]:
    """Variants of one method whose function is the same computation share its timing."""
    row, prepared = measured.row, measured.prepared
    return ("function", row.method, prepared.f_key or row.variant, row.dtype, row.device)  # type: ignore[union-attr]


def _timing_columns(held: list[Measured], timings: dict[tuple[Any, ...], Timing]) -> None:
    from .metrics import is_exact

    fastest: dict[tuple[str, str], Timing] = {}
    for i, measured in enumerate(held):
        t = timings.get(("gradient", i))
        row = measured.row
        if t is not None and is_exact(row.method, row.variant):
            group = (row.dtype, row.device)
            if group not in fastest or t.median_s < fastest[group].median_s:
                fastest[group] = t
    for i, measured in enumerate(held):
        t = timings.get(("gradient", i))
        if t is None or measured.prepared is None:
            continue
        row, prepared = measured.row, measured.prepared
        row.update(t.as_row())
        f = timings.get(_f_key(measured)) if prepared.f_timed is not None else None
        if f is not None:
            row.f_time_s = f.median_s
            if f.median_s > 0:
                row.grad_over_f = paired_ratio(t, f)
        case_f = timings.get(("case", row.dtype))
        if case_f is not None:
            row.time_over_f = paired_ratio(t, case_f)
        best = fastest.get((row.dtype, row.device))
        if best is not None:
            row.time_over_fastest = paired_ratio(t, best)
        unstable_note = prepared.check_stable() if prepared.check_stable else None
        if unstable_note:
            row.unstable = True
            measured.note = f"{measured.note}; {unstable_note}" if measured.note else unstable_note


def _without_reference(unit: Unit, flat: np.ndarray, missing: Missing | None, values: dict[str, Any]) -> Row:
    """A gradient that cannot be judged: an error when the case itself fails, else not checked."""
    from . import metrics

    status, rel, max_eps = metrics.classify(flat, None, unit.method, unit.variant, unit.dtype)
    if missing is not None and missing.cause == Cause.CASE_FAILS:
        return unit.row(**dict(values, status=Status.ERROR, diagnosis=missing.text, cause=Cause.CASE_FAILS))
    if status == Status.OK and unit.case.size > REFERENCE_MAX_INPUTS and missing is not None and \
            missing.cause == Cause.NO_REFERENCE and not output_shape(unit.case):
        return _along_directions(unit, flat, missing, values)
    if status == Status.OK and unit.method == "tape" and unit.case.native is not None and flat.ndim == 1 and \
            (missing is None or missing.cause == Cause.NO_REFERENCE):
        checked = _against_differences(unit, flat, missing, values)
        if checked is not None:
            return checked
    if status == Status.OK:
        status = Status.SKIPPED
    return unit.row(**dict(values, status=status, rel_error=rel, max_error_eps=max_eps, cause=Cause.NO_REFERENCE,
                           diagnosis=f"accuracy not checked: no reference gradient ({missing})"))


def _along_directions(unit: Unit, flat: np.ndarray, missing: Missing, values: dict[str, Any]) -> Row:
    """A gradient of a case past the certified reference's input budget: checked along random-sign directions
    against Richardson derivatives of the case's NumPy function in float64 (``products.check_directions``, as
    ``assert_gradients`` does past its size); approximate methods at their own tolerance."""
    from . import metrics, products

    case = unit.case
    f = products.numpy_function(case, "float64")
    exact = metrics.is_exact(unit.method, unit.variant)
    try:
        found = products.check_directions(flat, lambda p: float(f(p)[0]), flatten(case.inputs, list(case.inputs)),
                                          float(np.finfo(unit.dtype).eps),
                                          rtol=None if exact else metrics.tolerance(unit.method, unit.variant,
                                                                                    unit.dtype))
    except UnitTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - no truth along the directions: accuracy not checked, saying why
        return unit.row(**dict(values, status=Status.SKIPPED, cause=Cause.NO_REFERENCE,
                               diagnosis=f"accuracy not checked: no reference gradient ({missing}), and the "
                                         f"Richardson directional derivatives failed ({_message(exc)})"))
    worst = float(np.max(np.abs(found.got - found.expected) / np.maximum(np.abs(found.expected), 1e-300)))
    text = (f"no certified reference ({missing}); checked along {found.got.size} random-sign directions against "
            f"Richardson derivatives in float64: {found.describe()}")
    return unit.row(**dict(values, status=Status.OK if found.passed else Status.INACCURATE, rel_error=worst,
                           cause=None if found.passed else Cause.UNKNOWN, diagnosis=text,
                           reference="richardson-directions"))


def _against_differences(unit: Unit, flat: np.ndarray, missing: Missing | None, values: dict[str, Any]
                         ) -> Row | None:
    """A tape row of native code with no certified truth (a Keras model whose maths cannot be written): judged
    against Richardson differences of the same native code in float64 and their error estimate, as
    ``assert_gradients`` does without a reference. None where the differences cannot be formed."""
    from .diagnose import differences_truth
    from .engines import split

    case = unit.case
    shapes = [tuple(np.shape(v)) for v in case.inputs.values()]

    def f(vector: np.ndarray) -> float:
        import tensorflow as tf

        parts = [tf.constant(p, dtype=tf.float64) for p in split(np.asarray(vector, dtype=np.float64), shapes)]
        return float(case.native(*parts))

    try:
        truth = differences_truth(f, flatten(case.inputs, list(case.inputs)), unit.dtype)
        verdict = judge(None, unit.method, unit.variant, unit.dtype, flat, truth, native=True)
    except Exception:  # noqa: BLE001 - no differences to check against: the row says accuracy was not checked
        return None
    note = (f"no certified truth exists ({missing}); checked against Richardson-extrapolated differences of the "
            "same TensorFlow code in float64 and their error estimate")
    text = note if verdict.diagnosis is None else f"{verdict.diagnosis}; {note}"
    return unit.row(**dict(values, status=verdict.status, rel_error=verdict.rel_error,
                           max_error_eps=verdict.max_error_eps, cause=verdict.cause, diagnosis=text,
                           reference="richardson-differences"))


def _measure_unit(unit: Unit, config: Config, ref: Any, missing: Missing | None) -> Measured:
    """Prepare, evaluate and judge one gradient; its timing follows with the case's others."""
    if unit.variant in PRODUCT_VARIANTS:
        return _measure_product(unit, config)
    base = dict(reference=_reference_label(ref), reference_radius=getattr(ref, "worst_radius", None))
    prepared = _prepare(unit, base)
    if isinstance(prepared, Row):
        return Measured(prepared)
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
            values.update(status=Status.UNDEFINED, cause=Cause.NO_DERIVATIVE,
                          diagnosis=f"the true gradient does not exist here: {ref.undefined}; "
                                    f"TensorFlow returned None for {', '.join(exc.inputs)}")
        else:
            values.update(status=Status.NONE, diagnosis=_none_diagnosis(unit.case, exc, ref), cause=Cause.NO_GRADIENT)
    except UnitTimeout:
        raise
    except Exception as exc:  # noqa: BLE001
        return Measured(unit.error(exc, **values))
    timed = prepared if config.timing else None
    untimed = dict(values)  # what the row says if timing then fails
    if gradient is None:
        return Measured(unit.row(**values), timed, untimed)
    if config.keep_gradients:
        values["gradient"] = gradient
    shape = output_shape(unit.case)
    if shape:
        wrong = _jacobian_shape_error(unit.case, gradient, shape)
        if wrong:
            return Measured(unit.row(**dict(values, status=Status.ERROR, diagnosis=wrong, cause=Cause.RAISED)))
        flat = flatten_jacobian(gradient, list(unit.case.inputs), output_size(unit.case))
        unconnected = list(info.get("unconnected") or ())
    else:
        flat = flatten(gradient, list(unit.case.inputs))
    if ref is None:
        return Measured(_without_reference(unit, flat, missing, values), timed, untimed)
    if shape:
        from .diagnose import judge_jacobian

        verdict = judge_jacobian(unit.case, unit.method, unit.variant, unit.dtype, flat, ref, step=values.get("step"),
                                 unconnected=unconnected)
    else:
        verdict = judge(unit.case, unit.method, unit.variant, unit.dtype, flat, ref, step=values.get("step"))
    values.update(status=verdict.status, rel_error=verdict.rel_error, max_error_eps=verdict.max_error_eps,
                  diagnosis=verdict.diagnosis, cause=verdict.cause)
    if verdict.status != Status.UNDEFINED and math.isfinite(verdict.attainable_error):
        values["attainable_error"] = verdict.attainable_error
    if verdict.status not in (Status.NAN, Status.INF, Status.UNDEFINED):
        values["taylor_order"] = verdict.taylor_order
    return Measured(unit.row(**values), timed, untimed, note or None, judged=True)


def _jacobian_shape_error(case: Case, gradient: dict[str, np.ndarray], shape: tuple[int, ...]) -> str | None:
    """Why an engine's derivative of a vector case is not its Jacobian (a block of the wrong shape, such as the
    gradient of the outputs' sum), or None."""
    for name, value in case.inputs.items():
        want = tuple(shape) + tuple(value.shape)
        got = tuple(np.shape(gradient.get(name))) if name in gradient else None
        if got != want:
            return (f"the derivative with respect to {name} has shape {got}, but the Jacobian of an output of shape "
                    f"{tuple(shape)} with respect to an input of shape {tuple(value.shape)} has shape {want}")
    return None
#: product-row statuses from worst to best: the worst entry's status is the row's
_PRODUCT_ORDER = (Status.ERROR, Status.NAN, Status.INF, Status.NONE, Status.INACCURATE, Status.UNCERTAIN,
                  Status.UNDEFINED, Status.OK)


def _measure_product(unit: Unit, config: Config) -> Measured:
    """A ``jvp``/``vjp`` row (diffbench.products), judged by :func:`_judge_product`."""
    base: dict[str, Any] = {}
    try:
        prepared = _prepare_product(unit)
    except NoGradient as exc:
        return Measured(unit.row(status=Status.NONE, cause=Cause.NO_GRADIENT, diagnosis=str(exc)))
    if isinstance(prepared, Row):
        return Measured(prepared)
    values: dict[str, Any] = dict(base, prepare_s=prepared.prepare_s)
    info = dict(prepared.info)
    note = info.pop("note", None)
    values.update({k: v for k, v in info.items() if k in COLUMNS})
    try:
        with np.errstate(all="ignore"):
            product = prepared.gradient()
    except UnitTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - an engine failing to form its product: that row's error, not the run's
        return Measured(unit.error(exc, **values))
    if config.keep_gradients:
        values["gradient"] = product
    timed, untimed = (prepared if config.timing else None), dict(values)
    wrong = _product_shape_error(unit, product)
    if wrong:
        return Measured(unit.row(**dict(values, status=Status.ERROR, diagnosis=wrong, cause=Cause.RAISED)))
    names = ["jvp"] if unit.variant == "jvp" else list(unit.case.inputs)
    try:
        # in the case's order of inputs, whatever order the engine's dict has
        verdict, label, radius = _judge_product(unit, flatten(product, names))
    except UnitTimeout:
        raise
    except Skip as exc:
        return Measured(unit.row(**dict(values, status=Status.SKIPPED, cause=Cause.NO_REFERENCE,
                                        diagnosis=f"accuracy not checked: {exc}")), timed, untimed)
    except Exception as exc:  # noqa: BLE001 - the case fails when evaluated for the truth: its error, not the row's
        return Measured(unit.row(**dict(values, status=Status.ERROR, cause=Cause.CASE_FAILS,
                                        diagnosis=CASE_ERROR + _message(exc))), timed, untimed)
    values.update(status=verdict.status, rel_error=verdict.rel_error, max_error_eps=verdict.max_error_eps,
                  diagnosis=verdict.diagnosis, cause=verdict.cause, reference=label, reference_radius=radius)
    return Measured(unit.row(**values), timed, untimed, note or None, judged=True)


def _product_shape_error(unit: Unit, product: Any) -> str | None:
    """Why an engine's ``jvp``/``vjp`` value is not the product (J·v shaped like the output; uᵀ·J one array per
    input, shaped like it, under the input's name), or None: a misshaped product is the engine's error, never
    judged against a truth of another shape nor blamed on the case."""
    case = unit.case
    if not isinstance(product, dict):
        return f"the {unit.variant} product is a {type(product).__name__}, not a dict of arrays"
    if unit.variant == "jvp":
        want = {"jvp": tuple(output_shape(case))}
    else:
        want = {name: tuple(np.shape(value)) for name, value in case.inputs.items()}
    got = {name: tuple(np.shape(value)) for name, value in product.items()}
    if got == want:
        return None
    what = "J·v, shaped like the output" if unit.variant == "jvp" else "uᵀ·J, one array per input shaped like it"
    return f"the {unit.variant} product has shapes {got}, but {what}, has shapes {want}"


def _prepare_product(unit: Unit) -> Any:
    """The product's Prepared, or the row saying why there is none; NoGradient passes through."""
    try:
        engine = get_engine(unit.method)
        return engine.prepare(unit.case, unit.variant, unit.dtype, unit.device)
    except (NoGradient, UnitTimeout):
        raise
    except ImportError:
        return _prepare(unit, {})  # its row says which package is missing
    except Skip as exc:
        return unit.row(status=Status.SKIPPED, diagnosis=str(exc), cause=Cause.NOT_APPLICABLE)
    except Exception as exc:  # noqa: BLE001 - a broken case or engine becomes an error row
        return unit.error(exc)


def _judge_product(unit: Unit, flat: np.ndarray) -> tuple[Any, str, float | None]:
    """(verdict, reference label, reference radius) of a product under the gradient contract.

    VJP: judged as the gradient of the scalar case uᵀf against its certified reference. JVP: each entry k as
    the derivative of t -> f_k(x + t·v) against its certified reference, the row taking the worst entry's
    status (``_PRODUCT_ORDER``). Past the reference's budgets (``REFERENCE_MAX_INPUTS`` inputs,
    ``products.MAX_REFERENCE_OUTPUTS`` JVP entries, or a reference that is unavailable) the truth is Richardson
    differences in float64: along v for the JVP (each entry within its tolerance widened by ten times the
    differences' error estimate), along random-sign directions for the VJP (``products.check_directions``).
    A finite-difference product is not judged against differences (Skip)."""
    from . import products
    from .reference import ReferenceUnavailable

    case, method, variant, dtype = unit.case, unit.method, unit.variant, unit.dtype
    try:
        if case.size > REFERENCE_MAX_INPUTS:
            raise ReferenceUnavailable(f"{case.size} inputs exceed the certified reference's budget of "
                                       f"{REFERENCE_MAX_INPUTS}")
        if variant == "vjp":
            scalar, ref = products.reference_vjp(case, dtype)
            return judge(scalar, method, variant, dtype, flat, ref), _reference_label(ref), ref.worst_radius
        entries = products.reference_jvp(case, dtype)
    except (ReferenceUnavailable, Skip) as exc:
        if method == "finite":
            raise Skip(f"no certified reference product ({exc}), and Richardson differences are the finite "
                       "product itself") from None
        return _product_against_differences(unit, flat, str(exc))
    verdicts = [judge(scalar, method, variant, dtype, flat[k:k + 1], ref) for k, (scalar, ref) in enumerate(entries)]
    refs = [ref for _, ref in entries]
    return _worst_entry(unit, flat, verdicts, refs), _reference_label(refs[0]), max(
        (r.worst_radius for r in refs if r.worst_radius is not None), default=None)


def _worst_entry(unit: Unit, flat: np.ndarray, verdicts: list[Any], refs: list[Any]) -> Any:
    """One verdict for a JVP judged entry by entry: the worst status, the normwise relative error, the worst
    entries named (``out[k]: expected E, got G``, up to 3) before the worst entry's own diagnosis."""
    from . import metrics
    from .diagnose import Verdict

    truth = np.array([float(r.flat[0]) for r in refs])
    rel, _ = metrics.errors(flat, truth, unit.dtype)
    max_eps = max((v.max_error_eps for v in verdicts), default=math.nan)
    worst = min(range(len(verdicts)), key=lambda k: (_PRODUCT_ORDER.index(verdicts[k].status)
                                                     if verdicts[k].status in _PRODUCT_ORDER else 0,
                                                     -abs(flat[k] - truth[k])))
    bad = [k for k, v in enumerate(verdicts) if v.status != Status.OK]
    if not bad:
        return Verdict(Status.OK, rel, max_eps, None)
    named = sorted(bad, key=lambda k: -abs(flat[k] - truth[k]) if np.isfinite(flat[k]) else -math.inf)[:3]
    listed = "; ".join(f"out[{k}]: expected {truth[k]:.10g}, got {flat[k]:.10g}" for k in named)
    own = verdicts[worst].diagnosis
    return Verdict(verdicts[worst].status, rel, max_eps, f"{listed}. out[{worst}]: {own}" if own else listed,
                   cause=verdicts[worst].cause)


def _product_against_differences(unit: Unit, flat: np.ndarray, why: str) -> tuple[Any, str, None]:
    """A product judged against Richardson differences in float64 (no certified reference product)."""
    from . import metrics, products
    from .diagnose import DifferencesTruth, Verdict

    case = unit.case
    u, v = products.directions(case, unit.dtype)
    note = f"no certified reference product ({why}); judged against Richardson-extrapolated differences in float64"
    if unit.variant == "jvp":
        found = products.finite_jvp(case, "float64", v)
        verdict = judge(None, unit.method, unit.variant, unit.dtype, flat, DifferencesTruth(found.value, found.error,
                                                                                          unit.dtype), native=True)
        # each entry is an output of its own: judged at its own size, as the certified JVP judges it, never
        # against the vector's norm (a 1e-14 output next to outputs of size 1 would pass any value there)
        truth = np.asarray(found.value, dtype=np.float64).ravel()
        got = np.asarray(flat, dtype=np.float64).ravel()
        tol = metrics.tolerance(unit.method, unit.variant, unit.dtype)
        floor = 16 * float(np.finfo(unit.dtype).smallest_subnormal)
        with np.errstate(invalid="ignore"):
            allowed = tol * np.abs(truth) + 10 * np.abs(np.asarray(found.error, dtype=np.float64).ravel()) + floor
            off = np.flatnonzero(np.abs(got - truth) > allowed) if verdict.status == Status.OK else np.array([], int)
        if off.size:
            worst = off[np.argsort(-(np.abs(got - truth)[off] / allowed[off]), kind="stable")][:3]
            listed = "; ".join(f"out[{k}]: expected {truth[k]:.10g} ± {10 * found.error[k]:.2g}, got {got[k]:.10g}"
                               for k in worst)
            verdict = Verdict(Status.INACCURATE, verdict.rel_error, verdict.max_error_eps,
                              f"{off.size} of {got.size} entries are beyond tolerance at their own size "
                              f"({tol:.2g} of each, plus ten times the differences' error estimate): {listed}",
                              cause=Cause.UNKNOWN)
        text = note if verdict.diagnosis is None else f"{verdict.diagnosis}; {note}"
        return dataclasses.replace(verdict, diagnosis=text), "richardson-differences", None
    f = products.numpy_function(case, "float64")
    x = flatten(case.inputs, list(case.inputs))
    exact = metrics.is_exact(unit.method, unit.variant)
    found = products.check_directions(flat, lambda p: float(np.dot(u, f(p))), x, float(np.finfo(unit.dtype).eps),
                                      rtol=None if exact else metrics.tolerance(unit.method, unit.variant, unit.dtype))
    worst = float(np.max(np.abs(found.got - found.expected) / np.maximum(np.abs(found.expected), 1e-300)))
    note += f" along {found.got.size} random-sign directions ({found.describe()})"
    status = Status.OK if found.passed else Status.INACCURATE
    return Verdict(status, worst, math.nan, note, cause=None if found.passed else Cause.UNKNOWN), \
        "richardson-directions", None


def _none_diagnosis(case: Case, exc: NoGradient, ref: Any) -> str:
    text = str(exc)
    if ref is not None and not ref.undefined:
        truth = ", ".join(f"{name}: {np.array2string(ref.values[name], precision=6)}" for name in exc.inputs)
        text += f". The true gradient there is {truth}"
        if any(np.any(ref.values[name]) for name in exc.inputs):
            text += ", not 0, so unconnected_gradients=tf.UnconnectedGradients.ZERO would give a wrong gradient"
    return text


def _none_hessian_diagnosis(case: Case, dtype: str, exc: NoGradient, ref: Any) -> str:
    """TensorFlow's None for second derivatives, with what the certified reference Hessian shows there: a zero
    is claimed only where the reference has one."""
    from . import reference as reference_module
    from .diagnose import none_hessian_truth

    if ref is None:
        return f"{exc}; no reference Hessian, so the true second derivatives are not known here"
    try:
        ref_hess = reference_module.reference_hessian(case, dtype)
    except Exception as error:  # noqa: BLE001 - the text then says the truth is not known
        return f"{exc}; no reference Hessian ({_message(error)}), so the true second derivatives are not known here"
    return none_hessian_truth(case, str(exc), exc.inputs, ref_hess)


def _measure_order2(unit: Unit, config: Config, ref: Any, missing: Missing | None,
                    f_times: dict[tuple[Any, ...], float] | None = None) -> Row:
    from . import reference as reference_module

    values: dict[str, Any] = {"reference": _reference_label(ref)}
    if output_shape(unit.case):
        return unit.row(status=Status.SKIPPED, cause=Cause.NOT_APPLICABLE, **values,
                        diagnosis=f"the case returns an array of shape {output_shape(unit.case)}: the second derivative "
                                  "of a vector output is a third-order tensor, which diffbench does not form")
    no_hessian = ref is not None and (ref.undefined or ref.order2_undefined)
    limit = engine_info(unit.method).max_hessian_inputs
    if limit is not None and unit.case.size > limit:
        return unit.row(status=Status.SKIPPED, cause=Cause.NOT_APPLICABLE, **values,
                        diagnosis=f"{unit.case.size} inputs exceed the {unit.method} Hessian budget of {limit} inputs "
                                  f"(the engine's declared max_hessian_inputs)")
    try:
        engine = get_engine(unit.method)
        start = time.perf_counter()
        hess = engine.hessian(unit.case, unit.variant, unit.dtype)
        values["prepare_s"] = time.perf_counter() - start
        # an engine may say how it formed its last Hessian (columns such as ``evaluation``)
        values.update({k: v for k, v in getattr(engine, "last_hessian_info", {}).items() if k in COLUMNS})
    except Skip as exc:
        return unit.row(status=Status.SKIPPED, diagnosis=str(exc), cause=Cause.NOT_APPLICABLE, **values)
    except NoGradient as exc:
        if no_hessian:
            return unit.row(status=Status.UNDEFINED, cause=Cause.NO_DERIVATIVE, **values,
                            diagnosis=f"the true Hessian does not exist here: {ref.undefined or ref.order2_undefined}")
        return unit.row(status=Status.NONE, diagnosis=_none_hessian_diagnosis(unit.case, unit.dtype, exc, ref),
                        cause=Cause.NO_GRADIENT, **values)
    except UnitTimeout:
        raise
    except ImportError as exc:
        return unit.row(status=Status.SKIPPED, diagnosis=str(exc), cause=Cause.NOT_APPLICABLE, **values)
    except Exception as exc:  # noqa: BLE001
        return unit.error(exc, **values)
    if ref is None:
        if missing is not None and missing.cause == Cause.CASE_FAILS:
            return unit.row(status=Status.ERROR, diagnosis=missing.text, cause=Cause.CASE_FAILS, **values)
        return unit.row(status=Status.SKIPPED, diagnosis=f"accuracy not checked: no reference ({missing})",
                        cause=Cause.NO_REFERENCE, **values)
    if no_hessian:
        verdict = judge(unit.case, unit.method, unit.variant, unit.dtype, hess, ref, order=2)
        return unit.row(status=verdict.status, diagnosis=verdict.diagnosis, cause=verdict.cause, **values)
    try:
        ref_hess = reference_module.reference_hessian(unit.case, unit.dtype)
    except Exception as exc:  # noqa: BLE001
        return unit.row(status=Status.SKIPPED, cause=Cause.NO_REFERENCE,
                        diagnosis=f"accuracy not checked: no reference Hessian ({_message(exc)})", **values)
    verdict = judge(unit.case, unit.method, unit.variant, unit.dtype, hess, ref, order=2, reference_hessian=ref_hess)
    values.update(status=verdict.status, rel_error=verdict.rel_error, max_error_eps=verdict.max_error_eps,
                  diagnosis=verdict.diagnosis, cause=verdict.cause)
    return unit.row(**values)


def run(cases: Sequence[Case], methods: Sequence[str] | None = None, dtypes: Sequence[str] | None = None, *,
        variants: dict[str, Sequence[str]] | None = None, profile: str = "quick", order2: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S, timing: bool = True,
        on_row: Callable[[dict[str, Any]], None] | None = None,
        engine_options: dict[str, dict[str, str]] | None = None) -> "Any":
    """Measure ``cases`` in this process and return the tidy results DataFrame.

    ``methods`` defaults to symbolic, tape and finite; ``dtypes`` to float32 and
    float64; ``variants`` maps a method to the variants to run (default: all).
    ``engine_options`` sets options engines declare, e.g. ``{"finite": {"evaluation": "jax.vmap"}}``.
    ``timeout`` is the budget per measurement in seconds (enforced with a timer signal
    in the main thread). Problems of a case become rows; nothing here raises for them.
    Raises KeyError for an unknown method, ValueError for an unknown dtype or profile.
    """
    import pandas as pd

    config = make_config(methods, dtypes, variants, profile, order2, timeout, timing,
                         engine_options=engine_options or {})
    rows: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row:
            on_row(row)

    for one in cases:
        measure_case(one, config, keep)
    return finish(pd.DataFrame([as_record(r) for r in rows], columns=COLUMNS))


def make_config(methods: Sequence[str] | None, dtypes: Sequence[str] | None,
                variants: dict[str, Sequence[str]] | None, profile: str = "quick", order2: bool = True,
                timeout: float | None = DEFAULT_TIMEOUT_S, timing: bool = True, **options: Any) -> Config:
    """Validate options and build a Config (raises KeyError/ValueError naming the bad option).
    ``options`` sets the remaining fields (``devices``, ``sweep``, ``keep_gradients``)."""
    from .engines import REGISTRY

    methods = tuple(methods or default_methods())
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
    for method, chosen in (options.get("engine_options") or {}).items():
        if method not in REGISTRY:
            raise KeyError(f"unknown method {method!r} in an engine option; known methods: {', '.join(REGISTRY)}")
        declared = engine_info(method).options
        for name, value in chosen.items():
            if name not in declared:
                raise ValueError(f"{method} has no option {name!r}; its options: "
                                 f"{', '.join(declared) or 'none'}")
            if value not in declared[name]:
                raise ValueError(f"{method}.{name} takes {', '.join(declared[name])}, not {value!r}")
    return Config(methods=methods, dtypes=dtypes, variants={k: tuple(v) for k, v in (variants or {}).items()},
                  profile=profile, order2=order2, timeout_s=timeout or 0.0, timing=timing, **options)


def finish(df: "Any") -> "Any":
    """Add the cross-row note to a results table: a float32 failure whose float64 twin is ok."""
    if df.empty:
        return df
    df = df.copy()
    for index, row in df[(df["status"] == Status.INACCURATE) & (df["dtype"] == "float32")].iterrows():
        twin = df[(df["case"] == row["case"]) & (df["method"] == row["method"]) & (df["variant"] == row["variant"])
                  & (df["dtype"] == "float64") & (df["order"] == row["order"]) & (df["device"] == row["device"])]
        if len(twin) and twin.iloc[0]["status"] == Status.OK and not _weighs_float64(row):
            df.at[index, "diagnosis"] = f"{row['diagnosis']}. In float64 the same method is ok " \
                                        f"(relative error {twin.iloc[0]['rel_error']:.2g})"
    return df


def _weighs_float64(row: Any) -> bool:
    """Whether a float32 row's diagnosis already weighed float64 (the cancellation advice, and finite
    differences, whose alternatives include float64), so the twin's note would repeat it."""
    return row.get("cause") in (Cause.CANCELLATION, *FD_CAUSES)


def _isnan(value: Any) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def measure_one(case: Case, method: str, variant: str, dtype: str, *, timeout: float | None = DEFAULT_TIMEOUT_S,
                timing: bool = False) -> dict[str, Any]:
    """The result row of one (method, variant, dtype) on the CPU, order 1, measured in process."""
    config = make_config([method], [dtype], {method: [variant]}, order2=False, timeout=timeout, timing=timing,
                         devices=("CPU",), sweep=False)
    rows: list[dict[str, Any]] = []
    measure_case(case, config, rows.append)
    return rows[0]
