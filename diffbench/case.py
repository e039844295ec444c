"""Cases: a function written once against an array namespace ``xp``, plus its inputs.

A problem with a case (bad inputs, a wrong signature, a file that does not import)
never raises at definition or discovery time: it is recorded on the ``Case`` as
``problem`` so that a run reports it as an ``error`` row and carries on.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import inspect
import json
import linecache
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from .errors import CaseError

if TYPE_CHECKING:
    from .keywords import KeywordExpression

__all__ = ["Case", "case", "load_cases", "uniform", "CaseError", "STATUSES"]

#: Every status a result row can carry (see DESIGN.md, "Truth and accuracy").
from .results import STATUSES  # noqa: E402 - re-exported: the statuses a case may expect


def uniform(shape: int | Sequence[int], low: float = -1.0, high: float = 1.0, *, seed: int = 0) -> np.ndarray:
    """Return a seeded uniform sample in [low, high) of ``shape`` (float64), for case inputs.

    The same seed always gives the same point, so reports and baselines are reproducible.
    """
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def _convert_input(case_name: str, input_name: str, value: Any) -> tuple[np.ndarray, bool]:
    """Turn one input value into a float64 array; return it and whether it was integer-typed."""
    where = f"case {case_name!r}, input {input_name!r}"
    if isinstance(value, (str, bytes)):
        raise CaseError(f"{where}: got the string {value!r}; inputs must be numbers, e.g. {input_name}=3.0")
    if isinstance(value, (bool, np.bool_)):
        raise CaseError(f"{where}: got the boolean {value!r}; inputs must be real numbers")
    try:
        array = np.asarray(value)
    except ValueError as exc:  # numpy >= 1.24 refuses ragged nested lists
        raise CaseError(f"{where}: the nested lists are ragged (rows of different lengths); "
                        f"give every row the same length ({exc})") from None
    if array.dtype == object:
        raise CaseError(f"{where}: could not read {value!r} as a rectangular array of numbers; "
                        "use a float, a nested list with rows of equal length, or a numpy array")
    if array.dtype.kind in "US":
        raise CaseError(f"{where}: contains strings {value!r}; inputs must be numbers")
    if array.dtype.kind == "c":
        raise CaseError(f"{where}: is complex; cases are functions of real inputs")
    if array.dtype.kind == "b":
        raise CaseError(f"{where}: is boolean; inputs must be real numbers")
    if array.dtype.kind not in "fiu":
        raise CaseError(f"{where}: has unsupported type {array.dtype}; use floats")
    if array.size == 0:
        raise CaseError(f"{where}: is empty (shape {array.shape}); give at least one value")
    integer = isinstance(value, np.ndarray) and array.dtype.kind in "iu"
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))
        raise CaseError(f"{where}: contains NaN or inf at index {tuple(int(i) for i in bad[0])}; "
                        "a gradient is only defined at a finite point, choose finite values")
    return array, integer


@dataclass(eq=False)
class Case:
    """One function to differentiate: ``func(*inputs, xp=namespace) -> scalar``.

    Attributes: ``name`` (the function's name), ``func``, ``inputs`` (name -> float64
    array, in the order of the function's parameters), ``tags``, ``integer_inputs``
    (names given as integer numpy arrays: TensorFlow sees them as integer tensors),
    ``native`` (optional TensorFlow implementation differentiated by the tape instead
    of ``func``), ``expect`` (expected statuses, see :meth:`expected_status`),
    ``sizes`` (optional ``n -> inputs`` factory for scaling studies), ``source_file``,
    ``problem`` (why the case cannot run, or ``None``).
    """

    name: str
    func: Callable[..., Any] | None
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    integer_inputs: frozenset[str] = frozenset()
    native: Callable[..., Any] | None = None
    expect: dict[str, str] = field(default_factory=dict)
    sizes: Callable[[int], Mapping[str, Any]] | None = None
    source_file: str | None = None
    line: int = 0
    problem: str | None = None
    doc: str = ""

    # -- native TensorFlow implementation -------------------------------------------
    def tensorflow(self, fn: Callable[..., Any]) -> "Case":
        """Register a native TensorFlow implementation (decorator); returns the case.

        ``fn`` takes the inputs as TensorFlow variables (same names, same order) and
        returns a scalar tensor, or ``(loss, {input_name: variable})`` when it owns
        its variables (a Keras layer). The tape differentiates ``fn``; the case's
        ``xp`` function stays the mathematical truth it is checked against.
        """
        if not callable(fn):
            self.problem = self.problem or (f"case {self.name!r}: @{self.name}.tensorflow must decorate a function "
                                            f"(the native TensorFlow code), got {fn!r}")
            return self
        self.native = fn
        return self

    # -- derived facts -------------------------------------------------------------
    @property
    def size(self) -> int:
        """Total number of scalar inputs (the gradient's length when flattened)."""
        return int(sum(a.size for a in self.inputs.values()))

    @property
    def source_hash(self) -> str:
        """SHA-256 of the case's source, its native implementation and its inputs."""
        digest = hashlib.sha256()
        for fn in (self.func, self.native):
            if fn is None:
                continue
            try:
                digest.update(inspect.getsource(fn).encode())
            except (OSError, TypeError):
                digest.update(getattr(fn, "__qualname__", repr(fn)).encode())
        for key, value in self.inputs.items():
            digest.update(key.encode())
            digest.update(str(value.shape).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        digest.update(",".join(sorted(self.integer_inputs)).encode())
        return digest.hexdigest()[:16]

    @property
    def input_hash(self) -> str:
        """SHA-256 of the inputs alone (names, shapes and values): equal across loads of a case file unless the
        file draws its inputs from an unseeded random generator (or the clock)."""
        digest = hashlib.sha256()
        for key, value in self.inputs.items():
            digest.update(key.encode())
            digest.update(str(value.shape).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        return digest.hexdigest()[:16]

    @property
    def definition_hash(self) -> str:
        """SHA-256 of the case's mathematical definition: its ``xp`` function, inputs and expectations.

        Unlike :attr:`source_hash` it leaves out the native TensorFlow implementation: that
        is the code under test, so a baseline must compare it rather than call it stale.
        """
        digest = hashlib.sha256()
        if self.func is not None:
            try:
                digest.update(inspect.getsource(self.func).encode())
            except (OSError, TypeError):
                digest.update(getattr(self.func, "__qualname__", repr(self.func)).encode())
        for key, value in self.inputs.items():
            digest.update(key.encode())
            digest.update(str(value.shape).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        digest.update(",".join(sorted(self.integer_inputs)).encode())
        digest.update(repr(sorted(self.expect.items())).encode())
        return digest.hexdigest()[:16]

    def with_inputs(self, inputs: Mapping[str, Any], name: str | None = None) -> "Case":
        """Return a copy of this case evaluated at other inputs (same function)."""
        new = make_case(self.func, inputs, tags=self.tags, expect=self.expect, sizes=self.sizes,
                        name=name or self.name)
        new.native, new.source_file, new.line = self.native, self.source_file, self.line
        return new

    def at_size(self, n: int) -> "Case":
        """Return this case at problem size ``n``; raises CaseError if it has no ``sizes``."""
        if self.sizes is None:
            raise CaseError(f"case {self.name!r} is not size-parameterised; give @case(sizes=lambda n: {{...}})")
        return self.with_inputs(self.sizes(n), name=self.name)

    def expected_status(self, method: str, variant: str, dtype: str, order: int = 1) -> str:
        """The status this case is expected to have for one row (default ``ok``).

        ``expect`` keys are '-'-separated parts (method, variant, dtype, or ``order2``)
        with ``*`` wildcards; a key matches a row when every part matches one of the
        row's fields, and the key with the most parts wins. A value may list
        alternatives, ``"ok|inaccurate"``, where either outcome is legitimate (a graph
        optimiser that may or may not rewrite the formula).
        """
        fields = (method, variant, dtype, f"order{order}")
        best, best_parts = "ok", -1
        for key, status in self.expect.items():
            parts = key.split("-")
            if all(any(fnmatch.fnmatchcase(f, p) for f in fields) for p in parts) and len(parts) > best_parts:
                best, best_parts = status, len(parts)
        return best

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in self.inputs.items())
        return f"Case({self.name}({shapes}), tags={list(self.tags)})"


def _check_signature(name: str, func: Callable[..., Any], inputs: Mapping[str, Any]) -> None:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        raise CaseError(f"case {name!r}: cannot read the function's signature") from None
    params = list(sig.parameters.values())
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.name != "xp"]
    if "xp" not in sig.parameters:
        raise CaseError(f"case {name!r}: the function must take the array namespace as keyword "
                        f"argument 'xp', e.g. def {name}({', '.join(positional) or 'x'}, xp): ...")
    others = [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.name != "xp" and p.default is p.empty]
    if others:
        raise CaseError(f"case {name!r}: keyword-only parameter(s) {others} are never passed; "
                        "the only keyword a case receives is 'xp'")
    if list(inputs) != positional:
        missing = [p for p in positional if p not in inputs]
        extra = [k for k in inputs if k not in positional]
        detail = []
        if missing:
            detail.append(f"no value for parameter(s) {missing}")
        if extra:
            detail.append(f"input(s) {extra} are not parameters of the function")
        if not detail:
            detail.append(f"inputs are in the order {list(inputs)} but the parameters are {positional}")
        raise CaseError(f"case {name!r}: {'; '.join(detail)}; inputs= must name each positional parameter once, in order")


def _valid_tags(tags: Any) -> tuple[str, ...]:
    """The tags that are strings (a bad ``tags=`` is reported as the case's problem; selection still works)."""
    if isinstance(tags, str):
        return (tags,)
    try:
        return tuple(t for t in tags if isinstance(t, str)) if tags else ()
    except TypeError:
        return ()


def _valid_expect(expect: Any) -> dict[str, str]:
    """The entries of ``expect=`` that are text to text (the rest is reported as the case's problem)."""
    if not isinstance(expect, Mapping):
        return {}
    return {k: v for k, v in expect.items() if isinstance(k, str) and isinstance(v, str)}


def _check_arguments(name: str, given_name: Any, tags: Any, expect: Any, sizes: Any) -> None:
    """Raise CaseError naming the first ``@case`` argument other than ``inputs`` that has the wrong type or value."""
    where = f"case {name!r}"
    if given_name is not None and not (isinstance(given_name, str) and given_name.strip()):
        raise CaseError(f"{where}: name= must be a non-empty string, got {given_name!r}; e.g. name='my_case', or "
                        "leave it out to use the function's name")
    if isinstance(tags, str):
        raise CaseError(f"{where}: tags must be a list of strings, e.g. tags=[{tags!r}]")
    if tags is not None:
        try:
            items = list(tags)
        except TypeError:
            raise CaseError(f"{where}: tags must be a list of strings, got {tags!r}; e.g. tags=['vector']") from None
        bad = [t for t in items if not isinstance(t, str) or not t]
        if bad:
            raise CaseError(f"{where}: tags must be non-empty strings; {bad} in tags={items!r} are not: write each "
                            "tag as text, e.g. tags=['vector', 'classic']")
    if expect is not None:
        if not isinstance(expect, Mapping):
            raise CaseError(f"{where}: expect= must be a dict of row pattern -> status, got {expect!r}; e.g. "
                            "expect={'tape': 'none'}")
        wrong = {k: v for k, v in expect.items() if not isinstance(k, str) or not isinstance(v, str)}
        if wrong:
            raise CaseError(f"{where}: expect= must map text to text; {wrong!r} does not: e.g. "
                            "expect={'tape-float32': 'inaccurate'}")
        bad = [s for value in expect.values() for s in value.split("|") if s not in STATUSES]
        if bad:
            raise CaseError(f"{where}: expect= names unknown status(es) {bad}; use one of {list(STATUSES)}")
    if sizes is not None and not callable(sizes):
        raise CaseError(f"{where}: sizes= must be a function of the problem size n returning inputs, got {sizes!r}; "
                        "e.g. sizes=lambda n: {'x': diffbench.uniform(n)}")


def make_case(func: Callable[..., Any] | None, inputs: Mapping[str, Any], *, tags: Sequence[str] = (),
              expect: Mapping[str, str] | None = None, sizes: Callable[[int], Mapping[str, Any]] | None = None,
              name: str | None = None) -> Case:
    """Build a Case, recording (never raising) any problem with it."""
    given_name = name
    name = name if isinstance(name, str) and name.strip() else str(getattr(func, "__name__", None) or "case")
    doc = getattr(func, "__doc__", None)
    made = Case(name=name, func=func, tags=_valid_tags(tags), expect=_valid_expect(expect),
                sizes=sizes if callable(sizes) else None,
                doc=inspect.cleandoc(doc) if isinstance(doc, str) else "")
    try:
        code = getattr(func, "__code__", None)
        if code is not None:
            made.source_file, made.line = code.co_filename, code.co_firstlineno
        if not callable(func):
            raise CaseError(f"case {name!r}: @case must decorate a function")
        _check_arguments(name, given_name, tags, expect, sizes)
        if not isinstance(inputs, Mapping) or not inputs:
            raise CaseError(f"case {name!r}: inputs must be a non-empty dict of name -> value, e.g. inputs={{'x': 1.0}}")
        keys = [k for k in inputs if not isinstance(k, str)]
        if keys:
            raise CaseError(f"case {name!r}: inputs= has key(s) {keys} that are not strings; name each input by its "
                            "parameter, e.g. inputs={'x': 1.0}")
        _check_signature(name, func, inputs)
        converted, integer = {}, set()
        for key, value in inputs.items():
            converted[key], is_int = _convert_input(name, key, value)
            if is_int:
                integer.add(key)
        made.inputs, made.integer_inputs = converted, frozenset(integer)
    except CaseError as exc:
        made.problem = str(exc)
    return made


def case(inputs: Mapping[str, Any], tags: Sequence[str] = (), *, expect: Mapping[str, str] | None = None,
         sizes: Callable[[int], Mapping[str, Any]] | None = None, name: str | None = None) -> Callable[[Callable[..., Any]], Case]:
    """Decorator that turns ``func(*inputs, xp)`` into a :class:`Case`.

    ``inputs`` maps each positional parameter to a float, a nested list or a numpy
    array (each becomes a float64 array of that shape; an integer-typed numpy array
    is additionally marked as an integer input). ``tags`` are free-form labels for
    selection. ``expect`` declares non-``ok`` statuses that are the point of the case
    (e.g. ``{"tape": "none"}``); ``sizes`` maps a problem size n to inputs for
    ``diffbench scale``. Never raises: problems are stored in ``Case.problem``.
    """

    def decorate(func: Callable[..., Any]) -> Case:
        made = make_case(func, inputs, tags=tags, expect=expect, sizes=sizes, name=name)
        if _defined is not None:
            _defined.append(made)
        return made

    if inspect.isfunction(inputs):  # a bare ``@case`` hands the function over as ``inputs``
        made = make_case(inputs, {}, name=name)
        made.problem = (f"case {made.name!r}: @case needs the point to evaluate at: write "
                        f"@case(inputs={{'x': 1.0}}) above def {made.name}(...)")
        if _defined is not None:
            _defined.append(made)
        return made  # type: ignore[return-value]
    return decorate


#: while a case file is being imported: every case its ``@case`` decorators made, including
#: one whose function name a later definition rebinds (it would vanish from the module)
_defined: list[Case] | None = None


def _broken(name: str, path: Path, message: str) -> Case:
    return Case(name=name, func=None, source_file=str(path), problem=message, tags=("file-error",))


#: SHA-256 of each case file's text as loaded (by the path its cases name in ``source_file``)
_loaded_digests: dict[str, str] = {}


def _snapshot_source(filename: str, source: bytes) -> None:
    """Pin the text a case file was loaded from, so that tools that re-read a function's source
    (``inspect.getsource``, hence ``tf.function``'s AutoGraph and :attr:`Case.source_hash`) read the
    version that runs even if the file is edited meanwhile. A ``linecache`` entry without an mtime is
    never checked against the file."""
    text = source.decode("utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[filename] = (len(source), None, lines, filename)
    _loaded_digests[filename] = hashlib.sha256(source).hexdigest()


#: how a run's parent process hands its worker processes the digests of the case files as it loaded them at
#: the start of the run (a worker loads them later, maybe after an edit)
DIGESTS_ENV = "DIFFBENCH_LOADED_DIGESTS"


def loaded_digests() -> dict[str, str]:
    """The SHA-256 digests of the case files this process has loaded, by file name."""
    return dict(_loaded_digests)


def _run_digests() -> dict[str, str]:
    try:
        found = json.loads(os.environ.get(DIGESTS_ENV, "{}"))
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def source_changed(case: Case) -> bool:
    """Whether the file ``case`` was loaded from now holds other text than when the run loaded it (or, outside
    a run's workers, than this process loaded it): it was edited or removed since; False for a case not loaded
    from a file by :func:`load_cases`."""
    digest = _run_digests().get(case.source_file or "") or _loaded_digests.get(case.source_file or "")
    if digest is None:
        return False
    try:
        return hashlib.sha256(Path(case.source_file).read_bytes()).hexdigest() != digest  # type: ignore[arg-type]
    except OSError:
        return True


def _load_file(path: Path) -> list[Case]:
    module_name = "diffbench_cases_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10] + "_" + path.stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return [_broken(path.stem, path, f"{path}: not a loadable Python file")]
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    global _defined
    outer, _defined = _defined, []
    try:
        source = path.read_bytes()
        _snapshot_source(str(path), source)
        # the same file under a spelling of its own: AutoGraph (tf.function) reloads the source of a function
        # from disk whenever a module's __file__ equals the function's file name, bypassing the snapshot
        module.__file__ = os.path.join(os.path.dirname(str(path)), os.curdir, os.path.basename(str(path)))
        exec(compile(source, str(path), "exec", dont_inherit=True), module.__dict__)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        return [_broken(path.stem, path, f"{path}:{exc.lineno}: syntax error: {exc.msg}; fix the file "
                                         "(its cases were not run; other files were)")]
    except BaseException as exc:  # an import error, or anything the file raises at import
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return [_broken(path.stem, path, f"{path}: importing the file raised {type(exc).__name__}: {exc} "
                                         "(its cases were not run; other files were)")]
    finally:
        made, _defined = _defined, outer
    here = str(path.resolve())
    rebound = [c for c in made if c.source_file and str(Path(c.source_file).resolve()) == here]
    # a case registered under two names (``@mycase.tensorflow`` returns the case) counts once
    found = list({id(v): v for v in [*vars(module).values(), *rebound] if isinstance(v, Case)}.values())
    found.sort(key=lambda c: c.line)
    if not found:
        return [_broken(path.stem, path, f"{path}: no cases found; decorate functions with "
                                         "@diffbench.case(inputs={...})")]
    return found


def load_cases(path: str | Path) -> list[Case]:
    """Discover the cases in a ``.py`` file or in every ``*.py`` of a folder (sorted).

    Returns the cases in file and definition order. Never raises for a bad file: a
    file that fails to import or holds no case, and a case whose name is already
    taken, come back as cases whose ``problem`` says what to fix. Raises
    FileNotFoundError if ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no case file or folder at {root}")
    files = [root] if root.is_file() else sorted(p for p in root.glob("*.py") if not p.name.startswith("_"))
    cases = [found for file in files for found in _load_file(file)]
    # of cases sharing a name the first valid one keeps it; every other one says so, next to
    # its own problem if it has one, so that no problem hides another
    keeper: dict[str, Case] = {}
    for one in cases:
        if one.problem is None:
            keeper.setdefault(one.name, one)
    for one in cases:
        first = keeper.get(one.name)
        if first is None or first is one or "file-error" in one.tags:
            continue
        clash = (f"case {one.name!r} in {one.source_file}:{one.line} has the same name as the case in "
                 f"{first.source_file}:{first.line}, which is the one measured; rename one (names identify rows "
                 "and baselines)")
        one.problem = f"{one.problem}; also, {clash}" if one.problem else clash
    return cases


def per_case(compute: Callable[[Case], Any]) -> Callable[[Case], Any]:
    """Memoise ``compute(case)`` for the life of the case object, exceptions included (they are
    re-raised for every caller, so a failing case fails once, not once per row)."""
    store: dict[int, tuple[Case, Any, bool]] = {}

    def cached(one: Case) -> Any:
        hit = store.get(id(one))
        if hit is None or hit[0] is not one:
            try:
                hit = (one, compute(one), False)
            except Exception as exc:  # noqa: BLE001 - remembered, re-raised below
                hit = (one, exc, True)
            store[id(one)] = hit
        if hit[2]:
            raise hit[1]
        return hit[1]

    cached.__doc__ = compute.__doc__
    cached.__name__ = compute.__name__
    return cached


def default_cases_path() -> Path:
    """The repository's ``cases/`` folder (next to the package), or ``./cases``."""
    here = Path(__file__).resolve().parent.parent / "cases"
    return here if here.exists() else Path("cases")


def matches(status: str, expected: str) -> bool:
    """Whether a row's status meets its expectation (``skipped`` by a budget always does)."""
    return status == "skipped" or status in str(expected).split("|")


def select(cases: Sequence[Case], keyword: str | KeywordExpression | None = None,
           tags: Sequence[str] | None = None) -> list[Case]:
    """Filter cases by a ``-k`` expression and by tags.

    ``keyword`` is a pytest-style expression (``safe and not wrong``; see :mod:`diffbench.keywords`), as text or
    parsed: each word matches a substring of the case's name or of one of its tags, ignoring case. ``tags`` keeps
    cases with at least one of them. Raises KeywordError (a ValueError) for an expression that cannot be parsed.
    """
    from .keywords import KeywordExpression

    chosen = list(cases)
    if keyword:
        expression = keyword if isinstance(keyword, KeywordExpression) else KeywordExpression.parse(keyword)
        chosen = [c for c in chosen if expression.matches(c.name, c.tags)]
    if tags:
        chosen = [c for c in chosen if set(tags) & set(c.tags)]
    return chosen


def is_finite_number(value: Any) -> bool:
    """True for a finite real number (used when validating what a case returns)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
