"""The baseline file of the gate: its format, its version history, and a reader that trusts nothing.

Baseline format (JSON, one file, readable and diffable by eye). ``SCHEMA_VERSION``
history:

- 1: cases -> {source_hash, file, inputs, reference, rows: [{method, variant, dtype,
  status, rel_error, time_median_s, gradient}]}, plus environment and created.
- 2: each case gains ``definition_hash`` (its ``xp`` function, inputs and expectations;
  staleness is judged by it, so a change to the native TensorFlow code is compared
  rather than called stale); ``source_hash`` stays, for information. Rows gain
  ``time_min_s`` and ``time_samples_s`` (every timing sample, for the significance test
  of ``--fail-slower``).
- 3: rows gain ``twin_sessions``: sessions of the gradient timed alternately with a fixed
  twin workload, each ``{"gradient_s": [...], "twin_s": [...]}`` (per-call seconds, one of
  each per round; :mod:`diffbench.slowdown`); ``check --fail-slower`` confirms a flagged row
  against them. The environment gains ``twin`` (the twin workload's
  name), ``load`` and ``load_after`` (load averages, CPUs, clock and governor before and
  after the snapshot). A version-2 baseline is still read: its gradients are compared as
  before, and a row ``--fail-slower`` flags cannot be confirmed (re-run snapshot).
- 4: Jacobians of vector-output cases. A row gains ``output_shape`` (the case's output shape,
  a list of ints; absent or null for a scalar case) and ``jacobian``: input name -> a
  :func:`fingerprint` for each input whose Jacobian block (m output components × n input
  components) has more than :data:`JACOBIAN_FULL_ENTRIES` entries (and n > ``PROJECTIONS`` + 1,
  where the fingerprint would be no smaller). Every other block is stored in full in
  ``gradient`` as before: the flat values of ``output_shape + input_shape`` in C order
  (output index major). A vector case's ``reference`` holds its reference Jacobian in the same
  form, for the blocks stored in full only. A scalar case's rows are exactly those of version 3.
  Versions 2 and 3 are still read; their rows have no Jacobians and are checked as before.

Reading a baseline only parses JSON; it never executes code. Every value is checked
against :data:`SCHEMA` before use, and NaN/Infinity literals or numbers beyond a float's
range are refused with the field that holds them.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from .case import STATUSES
from .errors import BaselineError

SCHEMA_VERSION = 4
#: older versions this diffbench still reads (the fields they lack are optional in the schema)
READABLE_VERSIONS = (2, 3, 4)
#: a Jacobian block with at most this many entries is stored in full; a larger one as a :func:`fingerprint`
JACOBIAN_FULL_ENTRIES = 4096
#: seeded random directions v_j of a fingerprint: it keeps J·v_j for each (one number per output component)
PROJECTIONS = 8
#: the largest-magnitude entries a fingerprint keeps exactly, by index
FINGERPRINT_ENTRIES = 16
#: the seed of a fingerprint's directions (stored with it, so a later diffbench regenerates the same ones)
FINGERPRINT_SEED = 20240622
#: integers longer than this cannot be a float's value; they are refused rather than parsed
MAX_INTEGER_DIGITS = 308


_NUMBER = {"type": "number"}
_GRADIENT_VALUE = {"anyOf": [_NUMBER, {"type": "null"}, {"enum": ["inf", "-inf"]}]}
_VALUES = {"type": "array", "items": _GRADIENT_VALUE}
_SECONDS = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]}
_NAME = {"type": "string", "minLength": 1}
_TIMES = {"type": "array", "items": {"type": "number", "minimum": 0}}
_SESSION = {"type": "object", "required": ["gradient_s", "twin_s"],
            "properties": {"gradient_s": _TIMES, "twin_s": _TIMES}}
_COUNT = {"type": "integer", "minimum": 0}
_FINGERPRINT = {
    "type": "object",
    "required": ["rows", "columns", "seed", "norms", "projections", "entries"],
    "properties": {
        "rows": _COUNT, "columns": _COUNT, "seed": _COUNT, "norms": _VALUES,
        "projections": {"type": "array", "items": _VALUES},
        "entries": {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                               "prefixItems": [_COUNT, _GRADIENT_VALUE]}},
    },
}
_ROW = {
    "type": "object",
    "required": ["method", "variant", "dtype", "status", "gradient"],
    "properties": {
        "method": _NAME, "variant": _NAME, "dtype": _NAME,
        "status": {"enum": list(STATUSES)},
        "rel_error": _GRADIENT_VALUE,
        "gradient": {"anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": _VALUES}]},
        "output_shape": {"anyOf": [{"type": "null"}, {"type": "array", "items": _COUNT}]},
        "jacobian": {"anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": _FINGERPRINT}]},
        "time_median_s": _SECONDS, "time_min_s": _SECONDS,
        "time_samples_s": {"anyOf": [{"type": "null"},
                                     {"type": "array", "items": {"type": "number", "minimum": 0}}]},
        "twin_sessions": {"anyOf": [{"type": "null"}, {"type": "array", "items": _SESSION}]},
    },
}
_INPUT = {"type": "object", "required": ["shape", "values"],
          "properties": {"shape": {"type": "array", "items": {"type": "integer", "minimum": 0}}, "values": _VALUES}}
_CASE = {
    "type": "object",
    "required": ["definition_hash", "inputs", "rows"],
    "properties": {
        "definition_hash": {"type": "string"}, "source_hash": {"type": "string"},
        "file": {"type": ["string", "null"]},
        "inputs": {"type": "object", "additionalProperties": _INPUT},
        "reference": {"anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": _VALUES}]},
        "reference_problem": {"type": "string"},
        "rows": {"type": "array", "items": _ROW},
    },
}
#: the JSON Schema of a version-4 baseline (and of versions 2 and 3, which lack the optional new fields)
SCHEMA = {
    "type": "object",
    "required": ["schema_version", "cases"],
    "properties": {"schema_version": {"enum": list(READABLE_VERSIONS)}, "environment": {"type": "object"},
                   "cases": {"type": "object", "additionalProperties": _CASE}},
}


class _Refused:
    """A JSON value a baseline may not hold; it fails every type check of the schema, which names its field."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _parse_int(text: str) -> Any:
    digits = len(text.lstrip("-"))
    return _Refused(f"an integer of {digits} digits") if digits > MAX_INTEGER_DIGITS else int(text)


def _parse_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _Refused(f"{text} (beyond a float's range)")


def _parse_constant(text: str) -> Any:
    return _Refused(f"{text} (not JSON: a baseline writes null for NaN and \"inf\"/\"-inf\" for infinities)")


def _field(error: jsonschema.ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    return path or "the top level"


def validate(data: Any, path: Path) -> None:
    """Raise BaselineError naming the first field of ``data`` that breaks :data:`SCHEMA`, or a repeated row."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise BaselineError(f"{path} is not a diffbench baseline (no schema_version)")
    version = data["schema_version"]
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise BaselineError(f"{path} has schema_version {version!r}; this diffbench reads versions {readable}. "
                            "Re-create it with this version's diffbench snapshot")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data))
    if error is not None:
        message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
        raise BaselineError(f"{path}: field {_field(error)}: {message}; fix it or re-create the baseline with "
                            "diffbench snapshot")
    for name, entry in data["cases"].items():
        seen: dict[tuple[str, str, str], int] = {}
        for index, row in enumerate(entry["rows"]):
            key = (row["method"], row["variant"], row["dtype"])
            if key in seen:
                raise BaselineError(f"{path}: field cases.{name}.rows[{index}] repeats the method, variant and dtype "
                                    f"of rows[{seen[key]}] ({'/'.join(key)}); keep one")
            seen[key] = index
            for input_name, print_ in (row.get("jacobian") or {}).items():
                problem = _fingerprint_problem(print_)
                if problem:
                    raise BaselineError(f"{path}: field cases.{name}.rows[{index}].jacobian.{input_name}: {problem}; "
                                        "re-create the baseline with diffbench snapshot")


def _fingerprint_problem(print_: dict[str, Any]) -> str | None:
    """What makes a fingerprint inconsistent with itself (its sizes), or None."""
    rows, columns = print_["rows"], print_["columns"]
    if len(print_["norms"]) != rows:
        return f"{len(print_['norms'])} norms for {rows} rows"
    if any(len(p) != rows for p in print_["projections"]):
        return f"a projection whose length is not the {rows} rows"
    if any(index >= rows * columns for index, _ in print_["entries"]):
        return f"an entry index beyond the {rows}×{columns} block"
    return None


# --------------------------------------------------------------------------- Jacobian fingerprints
def directions(seed: int, input_name: str, count: int, columns: int) -> np.ndarray:
    """The ``count`` seeded standard-normal directions (rows, length ``columns``) a fingerprint of the Jacobian
    block of ``input_name`` projects on: the same for the same seed and name on every machine."""
    rng = np.random.default_rng([seed, zlib.crc32(input_name.encode("utf-8"))])
    return rng.standard_normal((count, columns))


def _number(value: float) -> Any:
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def row_norms(block: np.ndarray) -> np.ndarray:
    """‖J[k, :]‖₂ per output component k, without underflow or overflow (each row scaled by its largest entry)."""
    with np.errstate(all="ignore"):
        largest = np.max(np.abs(block), axis=1) if block.shape[1] else np.zeros(block.shape[0])
        safe = np.where((largest > 0) & np.isfinite(largest), largest, 1.0)
        norms = safe * np.linalg.norm(block / safe[:, None], axis=1)
        return np.where((largest > 0) & np.isfinite(largest), norms, largest)


def fingerprint(block: np.ndarray, input_name: str, seed: int = FINGERPRINT_SEED, projections: int = PROJECTIONS,
                entries: int = FINGERPRINT_ENTRIES, at: list[int] | None = None) -> dict[str, Any]:
    """A compact record of a Jacobian block (m × n, float64) for the baseline: per output component k its norm
    ‖J[k, :]‖ and ``projections`` numbers J[k, :]·v_j for seeded standard-normal directions v_j
    (:func:`directions`), and its ``entries`` largest-magnitude entries exactly, by flat index k·n + i (``at``:
    those indices instead, to fingerprint a block the way a stored one was). JSON-ready (NaN null, ±inf text)."""
    block = np.asarray(block, dtype=np.float64)
    rows, columns = block.shape
    with np.errstate(all="ignore"):
        projected = (block @ directions(seed, input_name, projections, columns).T if columns
                     else np.zeros((rows, projections)))
    flat = block.ravel()
    if at is None:
        magnitude = np.where(np.isnan(flat), np.inf, np.abs(flat))
        at = sorted(int(i) for i in np.argsort(-magnitude, kind="stable")[:entries])
    return {"rows": rows, "columns": columns, "seed": seed,
            "norms": [_number(v) for v in row_norms(block)],
            "projections": [[_number(v) for v in projected[:, j]] for j in range(projections)],
            "entries": [[i, _number(flat[i])] for i in at if i < flat.size]}


def stored_in_full(rows: int, columns: int) -> bool:
    """Whether a baseline keeps a Jacobian block of ``rows`` × ``columns`` in full rather than as a fingerprint."""
    return rows * columns <= JACOBIAN_FULL_ENTRIES or columns <= PROJECTIONS + 1


def read_baseline(path: Path) -> dict[str, Any]:
    """Parse and validate a baseline (JSON only, no code); raises BaselineError saying what to do."""
    if not path.exists():
        raise BaselineError(f"no baseline at {path}; create one with: python -m diffbench snapshot --baseline {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BaselineError(f"the baseline {path} is unreadable ({exc}); re-create it with diffbench "
                            "snapshot") from None
    validate(data, path)
    return data
