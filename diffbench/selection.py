"""Which cases a command works on: the case files at a path, narrowed by a ``-k`` expression and tags.

Every function here raises :class:`~diffbench.errors.UsageError` with a message that names the
option to change; none prints or exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
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


#: the tag of cases at a realistic size (minutes per case): left out unless asked for (see load_selected)
REALISTIC_TAG = "realistic"
#: the tag of whole benchmark workloads (gradbench's evals: minutes with every method even at their tiny sizes):
#: left out of a plain run of the library folder, kept when asked for (see load_selected)
WORKLOAD_TAG = "gradbench"


def load_selected(path: str | Path | None, keyword: Any = None, tags: Sequence[str] | None = None,
                  realistic: bool = False) -> list[Case]:
    """The cases in the case file or folder at ``path`` (default: the repository's ``cases/``) that match the
    ``-k`` expression ``keyword`` and one of ``tags``.

    Cases tagged ``realistic`` (:data:`REALISTIC_TAG`) are kept only when ``realistic`` is true (``run --profile
    full``) or when ``keyword`` or ``tags`` name the tag. Cases tagged ``gradbench`` (:data:`WORKLOAD_TAG`, whole
    workloads) are kept when ``realistic`` is true, when ``keyword`` or ``tags`` name the tag, or when ``path`` is
    a case file rather than a folder (``--cases cases/gradbench.py``), so a plain run stays quick.

    The files are also loaded once in a child process (see :func:`door_report`): a case whose inputs differ
    between the two loads (unseeded randomness), or whose function makes a mistake every method would fail on
    (``np.exp`` on an xp value, a vector or ``None`` returned, a constant), gets that as its ``problem``, so a
    run gives it one case-level row and measures the rest.

    Raises UsageError when nothing is at ``path`` or no case is selected.
    """
    where = cases_path(path)
    held = _loaded.pop(_key(where), None)
    if held is not None:
        cases, report = held
    else:
        try:
            # a case file that imports TensorFlow or Keras would print their start-up lines here
            with stderr_captured():
                cases = load_cases(where)
        except FileNotFoundError as exc:
            raise UsageError(f"{exc}; pass --cases FILE_OR_FOLDER") from None
        report = door_report(where, CHILD_TIMEOUT_S)
    chosen = select(cases, keyword, tags)
    def asked(tag: str) -> bool:
        return tag in (tags or ()) or tag in str(keyword or "")

    if not (realistic or asked(REALISTIC_TAG)):
        chosen = [c for c in chosen if REALISTIC_TAG not in c.tags]
    if not (realistic or asked(WORKLOAD_TAG) or where.is_file()):
        chosen = [c for c in chosen if WORKLOAD_TAG not in c.tags]
    if not chosen:
        raise UsageError(f"no case in {where} matches -k '{keyword}'" if keyword else f"no cases in {where}")
    _apply(chosen, report)
    return chosen


#: seconds the child process that loads and checks the case files for ``run`` and ``list`` may take
CHILD_TIMEOUT_S = 300.0
#: the line the child prints when it has checked every case (see door_report)
_CHECKED = "diffbench: cases checked"
#: this process's load of the case files that probe_case_files made, kept for the load_selected after it
_loaded: dict[str, tuple[list[Case], "DoorReport"]] = {}


def _key(path: Path) -> str:
    return str(path.resolve())


@dataclass
class DoorReport:
    """What the child process saw: whether the files loaded, each case's input hash and door finding."""

    loaded: bool = False
    #: why the child ended before the files were loaded (its exit code and last line), or None
    failure: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    findings: dict[str, str] = field(default_factory=dict)


_CHILD = """\
import json, sys
from diffbench.case import load_cases
from diffbench.door import check_function
cases, skip, seen = load_cases(sys.argv[1]), set(sys.argv[2:]), set()
valid = [c for c in cases if c.problem is None and c.func is not None and not (c.name in seen or seen.add(c.name))]
print(json.dumps({"inputs": {c.name: c.input_hash for c in valid}}), flush=True)
print(%(loaded)r, flush=True)
for one in valid:
    if one.name in skip:
        continue
    print(json.dumps({"checking": one.name}), flush=True)
    found = check_function(one.func, one.inputs, one.name)
    print(json.dumps({"case": one.name, "finding": found}), flush=True)
print(%(checked)r, flush=True)
"""


def _end_group(pid: int) -> None:
    """End every process left in the session the child ``pid`` leads (what a case started while checked)."""
    if hasattr(os, "killpg"):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def door_report(path: Path, timeout: float) -> DoorReport:
    """Load the case files at ``path`` in a child process, and there evaluate each case once at the door
    (:func:`diffbench.door.check_function`). A case that ends the child while it is checked is skipped in a
    fresh child (its methods will say what it does). Never raises."""
    report, skip, checked = DoorReport(), [], set()
    code = _CHILD % {"loaded": _LOADED, "checked": _CHECKED}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for _ in range(3):
        # in a session of its own: whatever a case starts while it is checked ends with the check (no orphans)
        child = subprocess.Popen([sys.executable, "-c", code, str(path), *skip], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        try:
            stdout, stderr = child.communicate(timeout=timeout)
            exit_code = child.returncode
        except subprocess.TimeoutExpired:
            _end_group(child.pid)
            stdout, stderr = child.communicate()
            exit_code = None
            if _LOADED not in stdout:
                report.failure = f"loading the case files in {path} took longer than {timeout:g} s; a case file " \
                                 "hangs at import"
                return report
        finally:
            _end_group(child.pid)
        checking = None
        for line in stdout.splitlines():
            if line == _LOADED:
                report.loaded = True
            if not line.startswith("{"):
                continue
            try:
                item = json.loads(line)
            except ValueError:
                continue
            report.inputs.update(item.get("inputs", {}))
            checking = item.get("checking", checking)
            if "case" in item:
                checking = None
                checked.add(item["case"])
                if item.get("finding"):
                    report.findings[item["case"]] = item["finding"]
        if not report.loaded:
            tail = (stderr.strip().splitlines() or ["no output"])[-1]
            report.failure = (f"loading the case files in {path} ended the process (exit code {exit_code}: {tail}) "
                              "before they were loaded; a case file exits or crashes at import. Fix it: nothing can "
                              "be compared until it loads")
            return report
        if _CHECKED in stdout or checking is None or exit_code is None:
            return report
        skip = sorted(set(skip) | checked | {checking})  # again, past the case that ended it
    return report


def unseeded_message(one: Case) -> str:
    """The problem of a case whose inputs differ between two loads of its file."""
    return (f"case {one.name!r}: its inputs differ between two loads of {one.source_file or 'its file'} (unseeded "
            "randomness, or the clock): a baseline or a report would mix values from different points. Draw the "
            "inputs from a seeded generator, e.g. np.random.default_rng(0).uniform(...) or diffbench.uniform(n, "
            "seed=0)")


def _unseeded(cases: Sequence[Case], report: DoorReport) -> list[Case]:
    """The cases (each name's measured one) whose input hash differs from the child's."""
    out, seen = [], set()
    for one in cases:
        if one.problem is None and one.func is not None and one.name not in seen:
            seen.add(one.name)
            other = report.inputs.get(one.name)
            if other is not None and other != one.input_hash:
                out.append(one)
    return out


def _apply(cases: Sequence[Case], report: DoorReport) -> None:
    """Give each case what the child found about it as its ``problem``."""
    for one in _unseeded(cases, report):
        one.problem = unseeded_message(one)
    seen = set()
    for one in cases:
        if one.problem is None and one.func is not None and one.name not in seen:
            seen.add(one.name)
            if one.name in report.findings:
                one.problem = report.findings[one.name]


def probe_case_files(path: Path, timeout: float) -> None:
    """Load the case files at ``path`` once in a child process: a file that ends the process while it is
    imported (os._exit, a crash in native code) must fail a command, not end it with exit 0. Load them here
    too, and compare: inputs that differ between the two loads (unseeded randomness) would put values from
    different points in one baseline.

    Raises UsageError when loading takes longer than ``timeout`` seconds, ends the child process, or gives
    a case other inputs than here (naming the case and the fix).
    """
    report = door_report(path, timeout)
    if report.failure:
        raise UsageError(report.failure)
    try:
        with stderr_captured():
            cases = load_cases(path)
    except FileNotFoundError as exc:
        raise UsageError(f"{exc}; pass --cases FILE_OR_FOLDER") from None
    unseeded = _unseeded(cases, report)
    if unseeded:
        raise UsageError("; ".join(unseeded_message(one) for one in unseeded))
    _loaded[_key(path)] = (cases, report)
