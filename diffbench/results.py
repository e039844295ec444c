"""The result schema: statuses, causes, the typed row and its columns, in one place.

A run produces one :class:`Row` per measurement (case × method × variant × dtype ×
device × order). Two kinds of *annotations* share the tidy table so that one CSV
regenerates every report, but they are not measurements and are built, typed and
filtered apart from them:

- a **case note** (``method`` = ``case``): the case could not be loaded, or a name its
  function uses exists in no namespace; it stands for every row the case would have had;
- a **sweep point** (``method`` = ``sweep``): finite-difference error at one step size,
  the data of the report's step-size plot.

Statuses and causes are string-valued enums, so CSV and JSON hold the same text as
before and ``row["status"] == "ok"`` keeps working. Columns are documented in
``reports/README.md``; :data:`COLUMNS` is their order.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterator


class _Text(str, Enum):
    """A string-valued enum that prints and formats as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    __hash__ = str.__hash__  # equal to its value, so it hashes as its value (set and dict lookups by text)


#: the variants that measure Jacobian-vector products (J·v and uᵀ·J, :mod:`diffbench.products`) rather than whole
#: Jacobians; each product-capable engine declares them in ``EngineInfo.jacobian_variants``
PRODUCT_VARIANTS = ("jvp", "vjp")


class Status(_Text):
    """What a row says of a method's result, in report order."""

    OK = "ok"  # within tolerance of the certified reference
    INACCURATE = "inaccurate"  # finite but beyond tolerance
    NAN = "nan"  # a NaN where the true value is finite
    INF = "inf"  # an infinity where the true value is finite
    NONE = "none"  # TensorFlow returned None (no gradient connection)
    ERROR = "error"  # the case or the method raised
    TIMEOUT = "timeout"  # past the time budget; the worker was stopped
    SKIPPED = "skipped"  # the method does not apply, or accuracy could not be checked
    UNDEFINED = "undefined"  # the true derivative does not exist at the point
    UNCERTAIN = "uncertain"  # the reference could not be certified, and the certified part is within tolerance


#: every status, in report order
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
#: statuses of rows that carry no gradient
NO_GRADIENT_STATUSES = frozenset({"none", "error", "timeout", "skipped"})
#: statuses of rows where nothing was measured (the gate cannot compare them)
UNMEASURED_STATUSES = frozenset({"error", "timeout"})


class Cause(_Text):
    """Why a row is not ``ok``, as a field decisions can use (the diagnosis is its text for people)."""

    OVERFLOW = "overflow"  # an overflow, invalid value or division by zero in the function or the formula
    TF_FORMULA = "tf-formula"  # a built-in TensorFlow gradient formula that is known to lose accuracy
    BACKWARD_RANGE = "backward-range"  # an intermediate of the backward pass left the range
    NATIVE = "native"  # the case's own TensorFlow code or tf.custom_gradient disagrees with the maths
    SYMPY_FORMULA = "sympy-formula"  # SymPy's derivative formula loses accuracy in floating point
    SECOND_ORDER_FORMULA = "second-order-formula"  # second derivatives of a tape or SymPy lose accuracy
    CANCELLATION = "cancellation"  # the function's own values cancel: every method following it errs
    CONDITIONING = "conditioning"  # the function as written amplifies rounding (a long chain): every exact method errs
    FORMULA_CANCELLATION = "formula-cancellation"  # the derivative's formula cancels at this point (sin(x)/x near 0)
    TIE = "tie"  # a switch tied exactly at a differentiable point: a convention picks one side
    STENCIL_KINK = "stencil-kink"  # a finite-difference stencil reaches across a kink
    POLE_OR_DOMAIN = "pole-or-domain"  # a stencil reaches a pole or leaves the function's domain
    FD_ERROR = "fd-error"  # truncation or rounding of a finite difference, the method's own limit
    NON_FINITE = "non-finite"  # a NaN or infinity with no overflow in the function and no other cause found
    UNKNOWN = "unknown"  # beyond tolerance for a reason diffbench does not know
    NO_DERIVATIVE = "no-derivative"  # the true derivative does not exist at the point
    NOT_CERTIFIED = "not-certified"  # the reference could not be certified
    NO_REFERENCE = "no-reference"  # no reference: accuracy not checked
    CASE_FAILS = "case-fails"  # the case itself raises or returns a non-scalar
    TIME_BUDGET = "time-budget"  # a time budget ran out
    NOT_APPLICABLE = "not-applicable"  # the method or variant does not apply (the diagnosis says why)
    NO_GRADIENT = "no-gradient"  # the framework returned no gradient (None)
    RAISED = "raised"  # the method or the case raised while measured
    FLUSH_TO_ZERO = "flush-to-zero"  # the framework flushed a subnormal true value to 0 (FTZ/DAZ arithmetic)
    MUTATES_INPUT = "mutates-input"  # the case's function changes its input arrays in place
    MEMORY = "memory"  # the worker ran past its memory budget (--memory)


#: causes that are the finite-difference method's own, known limits
FD_CAUSES = frozenset({Cause.STENCIL_KINK, Cause.POLE_OR_DOMAIN, Cause.FD_ERROR})
#: causes that are the function's fault as written, not the method's: every exact method following the
#: formula errs as much (the report shows them apart, so no method is blamed for them)
FUNCTION_CAUSES = frozenset({Cause.CANCELLATION, Cause.CONDITIONING, Cause.FORMULA_CANCELLATION})

#: ``method`` of a case note and of a sweep point (annotations, not measurements)
CASE_NOTE = "case"
SWEEP = "sweep"
ANNOTATIONS = (CASE_NOTE, SWEEP)

@dataclass(frozen=True)
class Missing:
    """Why something a row needs (the reference) is missing: a text for people, a cause for decisions."""

    text: str
    cause: Cause = Cause.NO_REFERENCE

    def __str__(self) -> str:
        return self.text


#: the columns of a row that identify it
KEY = ("case", "method", "variant", "dtype", "device", "order")


@dataclass
class Row:
    """One row of the tidy results table (see reports/README.md for each column).

    Reads like a mapping (``row["status"]``, ``row.get("step")``) so that callers and the
    JSON journal handle it as the table does; :meth:`as_dict` gives the columns only.
    ``gradient`` travels with a row when a caller asked to keep gradients (the gate's
    snapshot) and is never a column.
    """

    case: str
    method: str
    variant: str
    dtype: str
    device: str
    order: int
    status: str | None = None
    expected: str | None = None
    rel_error: float | None = None
    max_error_eps: float | None = None
    taylor_order: float | None = None
    error_estimate: float | None = None
    time_median_s: float | None = None
    time_iqr_s: float | None = None
    time_min_s: float | None = None
    repeats: int | None = None
    loops: int | None = None
    unstable: bool | None = None
    prepare_s: float | None = None
    f_time_s: float | None = None
    grad_over_f: float | None = None
    reference: str | None = None
    diagnosis: str | None = None
    step: float | None = None
    expr_ops: int | None = None
    grad_ops: int | None = None
    n_inputs: int | None = None
    tags: str | None = None
    source_hash: str | None = None
    time_samples_s: str | None = None
    cause: str | None = None
    evaluation: str | None = None
    time_over_f: float | None = None
    time_over_fastest: float | None = None
    #: the error an exact method following the case's formula can attain in this dtype: eps·sᵢ relative
    attainable_error: float | None = None
    #: the proven bound on the reference's own error (worst component, relative to its size)
    reference_radius: float | None = None
    #: number of output components m of the case (1 for a scalar case); its derivative is an (m, N) Jacobian
    outputs: int | None = None
    #: the shape of what the case returns, e.g. "(3,)"; empty for a scalar case
    output_shape: str | None = None
    #: on a ``vjp`` row: |uᵀ(Jv) − (uᵀJ)v| / max(‖Jv‖, ‖uᵀJ‖) with the same method's JVP (diffbench.products)
    product_gap: float | None = None
    gradient: Any = field(default=None, metadata={"column": False})

    # ------------------------------------------------------------------ mapping access
    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in _FIELDS:
            raise KeyError(f"{key!r} is not a column of a result row")
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return key in _FIELDS

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _FIELDS else default

    def keys(self) -> Iterator[str]:
        return iter(COLUMNS)

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self[key] = value

    @property
    def key(self) -> tuple[Any, ...]:
        """(case, method, variant, dtype, device, order)."""
        return tuple(getattr(self, k) for k in KEY)

    @property
    def is_annotation(self) -> bool:
        """A case note or a sweep point, not a measurement."""
        return self.method in ANNOTATIONS

    def as_dict(self) -> dict[str, Any]:
        """The columns, with statuses and causes as plain strings."""
        return {c: _plain(getattr(self, c)) for c in COLUMNS}


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


#: every column, in order (the row's fields less ``gradient``)
COLUMNS: list[str] = [f.name for f in dataclasses.fields(Row) if f.metadata.get("column", True)]
_FIELDS = frozenset(f.name for f in dataclasses.fields(Row))


def row_of(case: Any, method: str, variant: str, dtype: str, device: str, order: int, **values: Any) -> Row:
    """A row for ``case`` (a :class:`diffbench.case.Case`) with the case's own columns filled in."""
    row = Row(case=case.name, method=method, variant=variant, dtype=dtype, device=device, order=order,
              n_inputs=case.size, tags=",".join(case.tags), source_hash=case.source_hash if case.func else "",
              expected=case.expected_status(method, variant, dtype, order))
    # the output's shape, where the case's has been found (diffbench.engines.output_shape caches it on the case)
    shape = getattr(case, "__dict__", {}).get("_output_shape")
    if shape is not None:
        row.outputs = int(math.prod(shape)) if shape else 1
        row.output_shape = str(tuple(shape)) if shape else None
    row.update(values)
    return row


def case_note(case: Any, what: str, diagnosis: str, cause: Cause = Cause.CASE_FAILS) -> Row:
    """The annotation for a case that produced no measurement at all (``what``: ``load``, ``namespace``)."""
    return row_of(case, CASE_NOTE, what, "-", "-", 1, status=Status.ERROR, diagnosis=diagnosis, cause=cause)


def sweep_point(case: Any, scheme: str, index: int, dtype: str, step: float, rel_error: float,
                reference: str) -> Row:
    """The annotation for one step of the finite-difference step sweep."""
    return row_of(case, SWEEP, f"{scheme}-{index:02d}", dtype, "CPU", 1, status=Status.OK, rel_error=rel_error,
                  step=step, reference=reference)


def as_record(row: Any) -> dict[str, Any]:
    """A row (typed or a mapping) as a dict of the columns."""
    if isinstance(row, Row):
        return row.as_dict()
    return {c: _plain(row.get(c)) for c in COLUMNS}


def measurements(df: Any) -> Any:
    """The rows of a results table that are measurements (no case notes, no sweep points)."""
    return df[~df["method"].isin(ANNOTATIONS)]


def without_sweep(df: Any) -> Any:
    """A results table less its sweep points (case notes stay: they stand for rows)."""
    return df[df["method"] != SWEEP]


def sweep_points(df: Any) -> Any:
    """The sweep points of a results table."""
    return df[df["method"] == SWEEP]


def _umask() -> int:
    # reading the umask means setting it; set it straight back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write a file so that readers see the old or the new version, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; give it the mode any new file gets here (0666 less the umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({} if isinstance(text, bytes) else {"encoding": "utf-8"})) as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- the results file
#: prefix of the columns holding the machine's facts (text, kept as written)
ENV_PREFIX = "env_"
#: how results.csv spells a status that plain ``pandas.read_csv`` would read as a missing value: ``nan`` is on
#: its list of missing-value markers, so the file says ``not-a-number``. :func:`read_results` reads both
#: spellings (files written before this change say ``nan``).
CSV_SPELLING = {Status.NAN.value: "not-a-number"}
_FROM_CSV = {v: k for k, v in CSV_SPELLING.items()}
#: the columns that hold a status or an expectation (``ok|nan``)
_STATUS_COLUMNS = ("status", "expected")


def _respell(value: Any, table: dict[str, str]) -> Any:
    if not isinstance(value, str):
        return value
    return "|".join(table.get(part, part) for part in value.split("|"))


def for_csv(df: Any) -> Any:
    """A results table as results.csv spells it (see :data:`CSV_SPELLING`)."""
    out = df.copy()
    for column in _STATUS_COLUMNS:
        if column in out.columns:
            out[column] = out[column].map(lambda v: _respell(_plain(v), CSV_SPELLING))
    return out


def from_csv(df: Any) -> Any:
    """A table read from a file diffbench wrote, with its statuses spelled as :class:`Status` values again."""
    out = df.copy()
    for column in _STATUS_COLUMNS:
        if column in out.columns:
            out[column] = out[column].map(lambda v: _respell(v, _FROM_CSV)).astype(object)
    return out


def _column_type(name: str) -> str:
    annotation = str(next(f.type for f in dataclasses.fields(Row) if f.name == name))
    return annotation.split("|")[0].strip()


def read_results(path: str | os.PathLike[str], *, typed: bool = True) -> Any:
    """Read a results file written by diffbench (results.csv, or results.parquet) into a pandas DataFrame.

    Every column of reports/README.md is there (missing ones as empty), in its type: numbers as float64,
    ``order``, ``repeats``, ``loops`` and ``n_inputs`` as nullable integers, ``unstable`` as nullable booleans,
    the machine's ``env_*`` facts as text as written, and, with ``typed`` (the default), ``status`` and ``cause``
    as categoricals whose categories are every status (report order) and every cause. A status ``nan`` is
    the word, never a missing value, in old and new files alike; only empty cells are missing. ``expected``
    holds the case's expectation as text (``ok|nan``).

    Raises ValueError when the file is not a diffbench results file, OSError when it cannot be read.
    """
    import pandas as pd

    path = Path(path)
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        header = pd.read_csv(path, nrows=0).columns
        # the machine's facts are text ("1.0e-09", a commit hash of digits): keep them as written
        df = pd.read_csv(path, dtype={c: str for c in header if c.startswith(ENV_PREFIX)}, keep_default_na=False,
                         na_values=[""])
    missing = [c for c in ("case", "method", "variant", "dtype", "status") if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not a diffbench results file: columns {missing} are missing")
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = float("nan")
    for column in _STATUS_COLUMNS:
        df[column] = df[column].map(lambda v: _respell(v, _FROM_CSV)).astype(object)
    if typed:
        _type_columns(df)
    return df


def _type_columns(df: Any) -> None:
    """Give each column of a results table read from a file its documented type (see :func:`read_results`)."""
    import pandas as pd

    for column in COLUMNS:
        kind = _column_type(column)
        try:
            if kind == "float":
                df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
            elif kind == "int":
                df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")
            elif kind == "bool":
                df[column] = df[column].map(_boolean).astype("boolean")
        except (TypeError, ValueError):
            continue  # a hand-edited cell: leave the column as read
    for column in ("case", "method", "variant", "dtype", "device"):
        df[column] = df[column].map(lambda v: v if v is None or isinstance(v, str) else str(v)).astype(object)
    statuses = list(STATUSES) + sorted(set(df["status"].dropna().astype(str)) - set(STATUSES))
    df["status"] = pd.Categorical(df["status"], categories=statuses, ordered=True)
    causes = [c.value for c in Cause] + sorted(set(df["cause"].dropna().astype(str)) - {c.value for c in Cause})
    df["cause"] = pd.Categorical(df["cause"], categories=causes)


def _boolean(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    return {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}.get(text)
