"""TensorFlow's start-up lines, kept off the console unless asked for.

Importing TensorFlow writes a dozen lines to the stderr file descriptor from C++ (absl's
"log messages before InitializeLog", oneDNN and CUDA probing notices), before
``TF_CPP_MIN_LOG_LEVEL`` can take effect and below Python's ``sys.stderr``. They say nothing
a report does not. :func:`import_tensorflow` points descriptor 2 at a temporary file around
the first import and restores it after; if the import fails, what was written is replayed to
the real stderr before the exception propagates, so a broken installation still explains
itself. With ``DIFFBENCH_VERBOSE=1`` in the environment (``--verbose``; worker processes
inherit it) nothing is redirected and TensorFlow's own log level is left alone.

The silence holds wherever TensorFlow is first imported in a process that imported diffbench (a
case file's ``import tensorflow``, Keras, the gate, a worker): :func:`install` puts a finder on
``sys.meta_path`` that wraps that one import in :func:`stderr_captured`. ``import diffbench``
installs it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
from typing import Any, Iterator, Sequence

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


#: the top-level packages whose first import is silenced
NOISY = ("tensorflow",)


class _QuietLoader(importlib.abc.Loader):
    """A module's own loader, its ``exec_module`` run with stderr captured (and replayed if it raises)."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        if not verbose():
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with stderr_captured():
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _QuietImports(importlib.abc.MetaPathFinder):
    """Finds :data:`NOISY` packages with the other finders and hands their import to :class:`_QuietLoader`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname not in NOISY or verbose():
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Silence the start-up lines of :data:`NOISY` packages wherever they are first imported in this process
    (once; a package already imported is left alone)."""
    if not any(isinstance(finder, _QuietImports) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImports())
