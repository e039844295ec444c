"""Which cases a command works on: the case files at a path, narrowed by a ``-k`` expression and tags.

Every function here raises :class:`~diffbench.errors.UsageError` with a message that names the
option to change; none prints or exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from .case import Case, default_cases_path, load_cases, select
from .errors import UsageError
from .quiet import stderr_captured

#: the line a clean load of the case files ends with (see probe_case_files)
_LOADED = "diffbench: case files loaded"


def cases_path(path: str | Path | None) -> Path:
    """``path`` as a Path, or the repository's ``cases/`` folder when it is None or empty."""
    return Path(path) if path else default_cases_path()


def load_selected(path: str | Path | None, keyword: Any = None, tags: Sequence[str] | None = None) -> list[Case]:
    """The cases in the case file or folder at ``path`` (default: the repository's ``cases/``) that match the
    ``-k`` expression ``keyword`` and one of ``tags``.

    Raises UsageError when nothing is at ``path`` or no case is selected.
    """
    where = cases_path(path)
    try:
        # a case file that imports TensorFlow or Keras would print their start-up lines here
        with stderr_captured():
            cases = load_cases(where)
    except FileNotFoundError as exc:
        raise UsageError(f"{exc}; pass --cases FILE_OR_FOLDER") from None
    chosen = select(cases, keyword, tags)
    if not chosen:
        raise UsageError(f"no case in {where} matches -k '{keyword}'" if keyword else f"no cases in {where}")
    return chosen


def probe_case_files(path: Path, timeout: float) -> None:
    """Load the case files at ``path`` once in a child process: a file that ends the process while it is
    imported (os._exit, a crash in native code) must fail a command, not end it with exit 0.

    Raises UsageError when loading takes longer than ``timeout`` seconds or ends the child process.
    """
    code = ("import sys\nfrom diffbench.case import load_cases\nload_cases(sys.argv[1])\n"
            f"print({_LOADED!r}, flush=True)\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UsageError(f"loading the case files in {path} took longer than {timeout:g} s; "
                         "a case file hangs at import") from None
    if _LOADED not in done.stdout:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UsageError(f"loading the case files in {path} ended the process (exit code "
                         f"{done.returncode}: {tail}) before they were loaded; a case file exits or crashes at "
                         "import. Fix it: nothing can be compared until it loads")
