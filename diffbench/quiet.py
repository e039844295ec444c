"""TensorFlow's start-up lines, kept off the console unless asked for.

Importing TensorFlow writes a dozen lines to the stderr file descriptor from C++ (absl's
"log messages before InitializeLog", oneDNN and CUDA probing notices), before
``TF_CPP_MIN_LOG_LEVEL`` can take effect and below Python's ``sys.stderr``. They say nothing
a report does not. :func:`import_tensorflow` points descriptor 2 at a temporary file around
the first import and restores it after; if the import fails, what was written is replayed to
the real stderr before the exception propagates, so a broken installation still explains
itself. With ``DIFFBENCH_VERBOSE=1`` in the environment (``--verbose``; worker processes
inherit it) nothing is redirected and TensorFlow's own log level is left alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Any, Iterator

#: set (to anything but empty or 0) to see TensorFlow's start-up lines
VERBOSE_ENV = "DIFFBENCH_VERBOSE"


def verbose() -> bool:
    """Whether TensorFlow's start-up lines should be shown (``--verbose``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def stderr_captured() -> Iterator[None]:
    """Redirect file descriptor 2 to a temporary file for the block and restore it after; if the block raises,
    copy what was captured to the real stderr first. Does nothing when :func:`verbose`."""
    if verbose():
        yield
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    capture = tempfile.TemporaryFile()
    os.dup2(capture.fileno(), 2)
    restored = False
    try:
        yield
    except BaseException:
        os.dup2(saved, 2)
        restored = True
        capture.seek(0)
        os.write(2, capture.read())
        raise
    finally:
        if not restored:
            os.dup2(saved, 2)
        os.close(saved)
        capture.close()


def import_tensorflow() -> Any:
    """``import tensorflow``, its start-up lines silenced (unless :func:`verbose`); returns the module."""
    if not verbose():
        # C++ notices after start-up (oneDNN, XLA) are noise in a benchmark's console too
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with stderr_captured():
        import tensorflow

    return tensorflow
