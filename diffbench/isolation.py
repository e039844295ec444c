"""What one case may not leave behind for the next: process-wide switches and its own inputs.

A worker measures many cases one after the other in one interpreter. A case that flips a
process-wide switch (``tf.debugging.enable_check_numerics()``, ``np.seterr``, ``os.chdir``,
a global random seed, TensorFlow's eager or mixed-precision mode) would change the rows of
every case after it. :func:`capture` records the switches diffbench knows; :func:`restore`
puts back every one that changed and names it, so the harness can reset them after each
measurement and say so on the offending case's rows.

:func:`mutated_inputs` finds a case whose function changes its input arrays in place. Every
method already gets fresh copies of the inputs, so such a case is measured correctly; the
finding is the case's own (its callers' arrays would change), reported once for the case.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import warnings
from typing import Any, Callable

import numpy as np

from .case import Case

#: a switch: (what it is, for people; read its value; set it back to a value read earlier)
Switch = tuple[str, Callable[[], Any], Callable[[Any], None]]


def _numpy_switches() -> list[Switch]:
    return [
        ("NumPy's floating-point error handling (np.seterr)", np.geterr, lambda v: np.seterr(**v)),
        ("the working directory", os.getcwd, os.chdir),
        ("NumPy's global random state (np.random)", np.random.get_state, np.random.set_state),
        ("Python's global random state (random)", random.getstate, random.setstate),
    ]


def _tensorflow_switches() -> list[Switch]:
    """TensorFlow's global switches, only where the case's process has imported TensorFlow."""
    if "tensorflow" not in sys.modules:
        return []
    import tensorflow as tf
    from tensorflow.python.debug.lib import check_numerics_callback
    from tensorflow.python.eager import context
    from tensorflow.python.framework import op_callbacks

    def numerics() -> bool:
        return getattr(check_numerics_callback._state, "check_numerics_callback", None) is not None

    def set_numerics(on: bool) -> None:
        (tf.debugging.enable_check_numerics if on else tf.debugging.disable_check_numerics)()

    def callbacks() -> tuple[Any, ...]:
        return tuple(context.context().op_callbacks)

    def set_callbacks(previous: tuple[Any, ...]) -> None:
        for callback in callbacks():
            if callback not in previous:
                op_callbacks.remove_op_callback(callback)

    def determinism() -> bool:
        return tf.config.experimental.is_op_determinism_enabled()

    def set_determinism(on: bool) -> None:
        (tf.config.experimental.enable_op_determinism if on else tf.config.experimental.disable_op_determinism)()

    switches: list[Switch] = [
        ("TensorFlow's check_numerics (tf.debugging.enable_check_numerics)", numerics, set_numerics),
        # after check_numerics, whose own callback it would otherwise name a second time
        ("TensorFlow's op callbacks", callbacks, set_callbacks),
        ("TensorFlow's eager execution of functions (tf.config.run_functions_eagerly)",
         tf.config.functions_run_eagerly, tf.config.run_functions_eagerly),
        ("TensorFlow's soft device placement", tf.config.get_soft_device_placement,
         tf.config.set_soft_device_placement),
        ("TensorFlow's global random seed (tf.random.set_seed)", lambda: context.global_seed(), tf.random.set_seed),
        ("TensorFlow's op determinism", determinism, set_determinism),
        ("TensorFlow's XLA auto-clustering (tf.config.optimizer.set_jit)", tf.config.optimizer.get_jit,
         tf.config.optimizer.set_jit),
    ]
    if "keras" in sys.modules:
        import keras

        switches.append(("Keras's mixed-precision policy", lambda: keras.mixed_precision.global_policy().name,
                         keras.mixed_precision.set_global_policy))
    return switches


def _switches() -> list[Switch]:
    return _numpy_switches() + _tensorflow_switches()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable values count as changed
        return False


def capture() -> dict[str, Any]:
    """The current value of every switch diffbench knows (TensorFlow's only once it is imported)."""
    values = {}
    for name, read, _ in _switches():
        with contextlib.suppress(Exception):
            values[name] = read()
    return values


def restore(baseline: dict[str, Any]) -> list[str]:
    """Set every switch that differs from ``baseline`` back to it; the names of those that differed.

    A switch that did not exist in ``baseline`` (TensorFlow imported since) is compared with its
    value right after import, which is what ``capture`` returns when called then: the caller
    captures again once the frameworks are loaded. A switch that cannot be set back is named with
    "(could not be reset)".
    """
    changed = []
    for name, read, write in _switches():
        if name not in baseline:
            continue
        try:
            now = read()
        except Exception:  # noqa: BLE001 - a switch that cannot be read is not compared
            continue
        if _same(now, baseline[name]):
            continue
        try:
            write(baseline[name])
            changed.append(name)
        except Exception:  # noqa: BLE001
            changed.append(f"{name} (could not be reset)")
    return changed


def state_note(changed: list[str]) -> str:
    """The note on the rows of a case that changed process-wide state."""
    return (f"the case changed process-wide state: {', '.join(dict.fromkeys(changed))}; diffbench set it back "
            "after the measurement, so later cases are not affected (a row measured while it was changed may be)")


def mutated_inputs(case: Case) -> list[str]:
    """The names of the inputs that ``case``'s function changes in place, evaluated once with NumPy
    on copies of its inputs (float64 for floats). Empty when none is changed or NumPy cannot evaluate it."""
    from .namespaces import numpy_namespace

    originals = {name: np.asarray(value) for name, value in case.inputs.items()}
    copies = {name: value.astype(np.float64) if value.dtype.kind == "f" else value.copy()
              for name, value in originals.items()}
    before = {name: value.copy() for name, value in copies.items()}
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.func(*copies.values(), xp=numpy_namespace("float64"))
    except (Exception, SystemExit):  # noqa: BLE001 - a case NumPy cannot evaluate is reported by its rows
        return []
    return [name for name in copies if not np.array_equal(copies[name], before[name], equal_nan=True)]


def mutation_note(names: list[str]) -> str:
    """The case-level finding for a function that changes its inputs in place."""
    which = ", ".join(names)
    return (f"f modifies its input{'s' if len(names) > 1 else ''} {which} in place (e.g. `x *= 3`); every method "
            "was given its own copy, so the rows are unaffected, but callers of f would see their arrays change: "
            "compute into a new array instead")
