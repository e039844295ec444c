"""Run cases in worker processes, so that no case can take the run down.

Each worker imports and warms up the engines it needs, says it is ready, then loads
case files itself and measures one case at a time, streaming each row back as it
completes. The parent is the only enforcer of budgets: it writes every row to
``results.jsonl`` at once, kills a worker whose current measurement outlives
``--timeout`` (counted from the measurement's ``start`` event, or from the last row for
what follows it, plus a short grace for the event to arrive), records a ``timeout`` row, or an ``error`` row if the worker
died (a crash in native code), starts a fresh worker, and carries on with the rest of
that case. Ctrl-C (or SIGTERM, see :class:`Interrupts`) stops the workers and returns
what finished. Workers die with their parent, even when it is killed outright.

The out folder is locked for the length of a run (:func:`lock_folder`) and carries a
small manifest (``run.json``) naming the case set, so that ``--resume`` can refuse a
folder made from other cases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .case import DIGESTS_ENV, Case, loaded_digests
from .errors import FolderLocked
from .harness import Config, key_of
from .results import CASE_NOTE, COLUMNS, SWEEP, Cause, Missing, Status, atomic_write, case_note, row_of

#: extra seconds beyond --timeout before a worker is killed: only the lag of its ``start``
#: event through the queue, since no timer runs inside the worker
GRACE_S = 2.0
#: a worker that has not finished importing and warming up its engines by then is stopped
STARTUP_TIMEOUT_S = 300.0
#: how often a worker checks that its parent is still alive (where prctl is not available)
PARENT_POLL_S = 1.0
#: the lock file in an out folder, holding the pid of the run that owns it
LOCK_NAME = ".diffbench.lock"
#: the manifest of a run folder
MANIFEST_NAME = "run.json"
#: version of run.json; history: 1 = {"schema_version", "cases"} (the resolved --cases path)
MANIFEST_VERSION = 1


class Interrupts:
    """Context manager turning SIGTERM into KeyboardInterrupt (like Ctrl-C), recording which
    signal arrived in ``signum`` so the caller can exit with 128 + signum.

    Installs handlers only in the main thread (elsewhere it records nothing and changes
    nothing); restores the previous handlers on exit.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        raise KeyboardInterrupt

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def exit_code(self) -> int:
        """128 + the signal that interrupted (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM for the ``with`` block (a journal append), so that an
    interrupt never leaves a row half written; they are handled as soon as it ends."""
    mask = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def lock_folder(folder: Path) -> Iterator[Path]:
    """Create ``folder`` if needed and hold an exclusive lock on it for the ``with`` block.

    Yields the folder. Raises FolderLocked when another process holds it, and OSError
    (NotADirectoryError, FileExistsError, PermissionError, ...) when the folder cannot be
    created or written. The lock dies with the process that holds it (no stale locks).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(folder))
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _try_lock(fd, path)
            # the previous holder may have removed the file between our open and our lock
            if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield folder
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _try_lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): best effort with an exclusive create
        if os.fstat(fd).st_size:
            raise FolderLocked(f"{path.parent} is in use by another run (pid {_holder(path)}); "
                               f"if none is running, delete {path}") from None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise FolderLocked(f"{path.parent} is in use by another run (pid {_holder(path)}); wait for it to "
                           "finish or choose another --out") from None


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def write_manifest(folder: Path, cases_path: Path) -> None:
    """Record in ``folder/run.json`` which case set the folder's rows come from."""
    text = json.dumps({"schema_version": MANIFEST_VERSION, "cases": str(cases_path.resolve())}, indent=1) + "\n"
    (folder / MANIFEST_NAME).write_text(text, encoding="utf-8")


def manifest_cases(folder: Path) -> str | None:
    """The resolved case path ``folder/run.json`` names, or None when there is no readable manifest."""
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema_version") != MANIFEST_VERSION:
        return None
    cases = data.get("cases")
    return cases if isinstance(cases, str) else None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _line(row: dict[str, Any]) -> str:
    return json.dumps({k: _jsonable(row.get(k)) for k in COLUMNS}) + "\n"


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to a JSON-lines file and flush, so a crash loses nothing written.

    A torn last line (a write cut short by a kill) is ended first, so that it cannot
    swallow the row appended after it; readers skip it.
    """
    with path.open("ab") as handle:
        if handle.tell() > 0:
            with path.open("rb") as reader:
                reader.seek(-1, os.SEEK_END)
                if reader.read(1) != b"\n":
                    handle.write(b"\n")
        handle.write("".join(_line(row) for row in rows).encode("utf-8"))
        handle.flush()


def rewrite_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace a JSON-lines file by ``rows``, atomically."""

    atomic_write(path, "".join(_line(row) for row in rows))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl``; a torn last line (an interrupted write) is ignored."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        for k, v in row.items():
            if v in ("inf", "-inf") and k not in ("case", "diagnosis", "status"):
                row[k] = float(v)
        rows.append(row)
    return rows


#: a worker's memory budget is never set below this (TensorFlow alone needs about 0.6 GiB of data
#: after its warm-up, measured with /proc/self/status VmData)
MIN_MEMORY_BYTES = 2 * 2**30
#: the share of the memory available at the start that the default budgets of all workers take together
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """The memory available for new work on this machine in bytes (Linux ``MemAvailable``), or None."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def default_memory(jobs: int) -> int:
    """The default memory budget of one of ``jobs`` workers: together they take ``MEMORY_SHARE`` of the
    memory available now, each at least ``MIN_MEMORY_BYTES``; 0 (no budget) where it cannot be known."""
    available = available_memory()
    if not available:
        return 0
    return max(MIN_MEMORY_BYTES, int(available * MEMORY_SHARE / max(1, jobs)))


def limit_memory(budget: int | None) -> None:
    """Hold this process (and what it starts) to ``budget`` bytes of data, where the platform allows.

    RLIMIT_DATA, not RLIMIT_AS: TensorFlow and JAX reserve gigabytes of address space they never
    use (a warmed-up worker: 2.8 GiB of address space, 0.6 GiB of data), so an address-space limit
    would have to be set far above what a case really uses. Since Linux 4.7 RLIMIT_DATA counts
    every private writable mapping (the heap, NumPy's and TensorFlow's buffers, thread stacks), so
    an allocation past it fails: a MemoryError in Python, which becomes the row's ``memory`` cause.
    """
    if not budget:
        return
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            budget = min(budget, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (budget, hard))


def _die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` does, however that one ends."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):  # the watchdog below still covers it
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="diffbench-parent-watchdog", daemon=True).start()


def _worker(wid: tuple[int, int], tasks: Any, connection: Any, config: Config, parent_pid: int) -> None:
    # its own session and process group, so that the parent can end every process a case starts
    # (``_end_group``) together with the worker
    with contextlib.suppress(OSError, AttributeError):
        os.setsid()
    _die_with_parent(parent_pid)
    limit_memory(config.memory_bytes)
    # the parent handles Ctrl-C and SIGTERM (a terminal or CI sends them to the whole group)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from .case import load_cases
    from .harness import measure_case, warm_up

    events = _Events(connection)
    # the parent enforces every budget from outside; a timer signal here could land inside an import
    config = dataclasses.replace(config, timeout_s=0.0, enforced_s=config.timeout_s or None)
    warm_up(config)
    from .isolation import capture

    baseline = capture()  # the switches every case must find: after the engines' own start-up
    events.put(("ready", wid, None))
    loaded: dict[str, dict[str, Case]] = {}
    try:
        while True:
            task = tasks.get()
            if task is None:
                return
            # task[5]: the parent's rows to re-time; task[6]: the reference Hessians settled by an earlier worker
            file, name, skip, ref_problem, failed = task[:5]
            if file not in loaded:
                loaded[file] = {}
                for one in load_cases(file):  # of cases sharing a name, the first valid one is measured
                    if one.problem is None:
                        loaded[file].setdefault(one.name, one)
            one = loaded[file].get(name)
            if one is None:  # the file changed since the parent read it
                gone = Case(name=name, func=None, source_file=file)
                events.put(("row", wid, case_note(gone, "load", f"{file} no longer defines a valid case {name!r} (was "
                                                                "it edited during the run?)")))
                events.put(("done", wid, name))
                continue
            if isinstance(skip, ScaleTask):
                events.put(("scale", wid, _scale_rows(one, skip)))
                events.put(("done", wid, f"scaling of {name}"))
                continue
            measure_case(one, config, lambda row: events.put(("row", wid, row)), skip=skip,
                         on_start=lambda key: events.put(("start", wid, key)), reference_problem=ref_problem,
                         failed=failed, on_measured=lambda row: events.put(("measured", wid, row)), baseline=baseline,
                         hessians=task[6] if len(task) > 6 else None,
                         on_hessian=lambda dtype, ok, value: events.put(("hessian", wid, (dtype, ok, value))))
            if "tensorflow" in sys.modules:
                from .engines.tape import gpu_devices

                events.put(("env", wid, list(gpu_devices())))
            events.put(("done", wid, name))
    except BaseException as exc:
        # what ends the worker outside any measurement (a bug, memory at an odd place): said, then re-raised
        with contextlib.suppress(Exception):
            events.put(("fatal", wid, (f"{type(exc).__name__}: {exc}", isinstance(exc, MemoryError))))
        raise


class _Events:
    """A worker's end of its event pipe. Each event is written before ``put`` returns (a
    multiprocessing queue writes from a background thread, so the ``start`` of a measurement
    that crashes the interpreter at once could be lost, and the crash blamed on loading)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def put(self, event: tuple[Any, ...]) -> None:
        self.connection.send(event)


@dataclass(frozen=True)
class ScaleTask:
    """A small scaling study run by a worker after the cases (for the report's scaling section)."""

    sizes: tuple[int, ...]
    methods: tuple[str, ...]
    budget_s: float
    variants: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: the study to run, ``diffbench.scale.study`` (given by the caller: the runner sits below it)
    study: Callable[..., Any] | None = None


def _scale_rows(case: Case, task: ScaleTask) -> list[dict[str, Any]]:
    try:
        if task.study is None:
            raise ValueError("no scaling study was given to run")
        df = task.study(case, list(task.sizes), list(task.methods), budget_s=task.budget_s,
                        variants=dict(task.variants) or None)
    except Exception as exc:  # noqa: BLE001 - the section then says why it is missing
        return [{"case": case.name, "status": "error", "diagnosis": f"{type(exc).__name__}: {exc}"}]
    return [{k: _jsonable(v) for k, v in row.items()} for row in df.to_dict("records")]


@dataclass
class _Slot:
    wid: tuple[int, int]
    process: Any
    tasks: Any
    events: Any
    started: float
    ready: bool = False
    task: tuple[Any, ...] | None = None
    key: tuple[Any, ...] | None = None
    since: float = 0.0
    done_keys: set[tuple[Any, ...]] = field(default_factory=set)
    #: rows judged but not yet timed (kept if the worker dies before their timed rows arrive), including
    #: those an earlier worker judged and this one measures again to time them (the task's sixth item)
    provisional: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    #: (message, whether a MemoryError) of what ended the worker outside any measurement, if it said
    fatal: tuple[str, bool] | None = None
    #: dtype -> (formed, the reference Hessian or why there is none) settled for the case in hand, by this
    #: worker or an earlier one (the task's seventh item): a fresh worker does not form it again
    hessians: dict[str, tuple[bool, Any]] = field(default_factory=dict)


def _problem_rows(cases: list[Case]) -> list[dict[str, Any]]:
    """One ``error`` row per name of the cases that cannot run; problems sharing a name are joined,
    so that none hides another."""
    by_name: dict[str, list[Case]] = {}
    for one in cases:
        if one.problem or one.func is None or not one.source_file:
            by_name.setdefault(one.name, []).append(one)
    rows = []
    for name, group in by_name.items():
        text = "; ".join(dict.fromkeys(one.problem or "no function" for one in group))
        rows.append(case_note(group[0], "load", text))
    return rows


def run_isolated(cases: list[Case], config: Config, jobs: int, on_rows: Callable[[list[dict[str, Any]]], None],
                 skip: set[tuple[Any, ...]], progress: Callable[[str], None] | None = None,
                 gpus: list[str] | None = None, scaling: tuple[Case, ScaleTask] | None = None,
                 on_scale: Callable[[list[dict[str, Any]]], None] | None = None,
                 notify: Callable[[str], None] | None = None,
                 started: Callable[[tuple[Any, ...]], None] | None = None) -> bool:
    """Measure ``cases`` in ``jobs`` worker processes; hand rows to ``on_rows`` as they arrive, and the key of
    each measurement to ``started`` as it begins (for progress).

    ``notify`` receives one-line notices for people (a worker replaced after a crash, a
    scaling study that did not finish); the caller decides where they go.

    Rows whose key is in ``skip`` are not measured again. Of cases sharing a name, the
    first without a problem is measured and the problems of the others become one
    ``error`` row. GPUs the workers' TensorFlow sees are appended to ``gpus``. Returns
    False if interrupted (KeyboardInterrupt, which :class:`Interrupts` also raises for
    SIGTERM), True when every case finished. Workers never outlive this call.
    """
    if config.memory_bytes is None:
        config = dataclasses.replace(config, memory_bytes=default_memory(jobs))
    # workers load the case files later, maybe after an edit: they compare them with what this process loaded
    os.environ[DIGESTS_ENV] = json.dumps(loaded_digests())
    pool = _Pool(config, _Sinks(on_rows, progress, on_scale, gpus, notify or (lambda message: None), started))
    for row in _problem_rows(cases):
        if key_of(row) not in skip:
            on_rows([row])
    for one in cases:
        if not (one.problem or one.func is None or not one.source_file):
            pool.measured.setdefault(one.name, one)
    for one in cases:
        if pool.measured.get(one.name) is one:
            # only this case's keys travel: a large resumed run would otherwise fill the pipe
            pool.pending.append((one.source_file, one.name, {k for k in skip if k[0] == one.name}, None, {}))
        if progress and one.name not in pool.measured and one is _first_named(cases, one.name):
            progress(one.name)
    if scaling is not None and scaling[0].source_file:
        # first in the queue: it overlaps the cases instead of lengthening the run's tail
        pool.pending.appendleft((scaling[0].source_file, scaling[0].name, scaling[1], None, {}))
    return pool.run(jobs)


@dataclass
class _Sinks:
    """Where the pool hands what it learns."""

    rows: Callable[[list[dict[str, Any]]], None]
    progress: Callable[[str], None] | None
    scale: Callable[[list[dict[str, Any]]], None] | None
    gpus: list[str] | None
    tell: Callable[[str], None]
    started: Callable[[tuple[Any, ...]], None] | None = None


class _Pool:
    """Worker processes, each fed one case at a time, stopped from outside when a unit overruns its
    budget or the worker dies, and replaced; what was in flight is recorded (``_recover``)."""

    def __init__(self, config: Config, sinks: _Sinks) -> None:
        self.config, self.sinks = config, sinks
        self.context = mp.get_context("spawn")
        self.pending: deque[tuple[Any, ...]] = deque()
        self.measured: dict[str, Case] = {}
        self.slots: list[_Slot] = []
        self.early_deaths: dict[str, int] = {}
        self.parent_pid = os.getpid()
        self.generation = 0

    def run(self, jobs: int) -> bool:
        from multiprocessing.connection import wait

        try:
            for index in range(max(1, min(jobs, len(self.pending)))):
                self.slots.append(self.start_slot(index))
            while self.pending or any(s.task for s in self.slots):
                self.assign()
                # every event written is read before any clock is checked, so a slow parent never
                # mistakes a finished measurement for an overdue one
                open_events = [s.events for s in self.slots if s.events is not None]
                if open_events:
                    wait(open_events, timeout=0.5)
                else:
                    time.sleep(0.5)
                for slot in self.slots:
                    self.drain(slot)
                for i, slot in enumerate(self.slots):
                    if slot.task is not None:
                        self.check(i, slot)
        except KeyboardInterrupt:
            for slot in self.slots:
                if slot.process.is_alive():
                    slot.process.kill()
                _end_group(slot.process)
            return False
        finally:
            self.shut_down()
        return True

    def start_slot(self, index: int) -> _Slot:
        self.generation += 1
        tasks = self.context.Queue()
        # a task left unread by a killed worker must not block this process's exit
        tasks.cancel_join_thread()
        wid = (index, self.generation)
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_worker, args=(wid, tasks, writer, self.config, self.parent_pid),
                                       daemon=True)
        process.start()
        writer.close()  # the worker holds the only writing end: its death reads as the end of the pipe
        return _Slot(wid, process, tasks, reader, started=time.monotonic())

    def assign(self) -> None:
        """Hand the next pending task to every idle worker."""
        for slot in self.slots:
            if slot.task is None and self.pending:
                slot.task, slot.key, slot.done_keys = self.pending.popleft(), None, set()
                slot.provisional = dict(slot.task[5]) if len(slot.task) > 5 else {}
                slot.hessians = dict(slot.task[6]) if len(slot.task) > 6 else {}
                slot.since = time.monotonic()
                slot.tasks.put(slot.task)

    def drain(self, slot: _Slot) -> None:
        """Handle every event a slot's worker has written so far."""
        while slot.events is not None:
            try:
                if not slot.events.poll():
                    return
                self.handle(*slot.events.recv())
            except (EOFError, OSError):  # the worker is gone; a message it was writing is lost
                slot.events.close()
                slot.events = None
            except Exception as exc:  # noqa: BLE001 - a malformed event must not end the run
                self.sinks.tell(f"diffbench: unreadable event from a worker ({type(exc).__name__}: {exc})")

    def replace(self, index: int) -> None:
        old = self.slots[index]
        if old.process.is_alive():
            old.process.kill()
        old.process.join(timeout=5)
        _end_group(old.process)
        if old.events is not None:
            old.events.close()
        self.slots[index] = self.start_slot(index)

    def handle(self, kind: str, wid: tuple[int, int], payload: Any) -> None:
        slot = _by_wid(self.slots, wid)
        now = time.monotonic()
        if kind == "ready":
            if slot is not None:
                slot.ready = True
                slot.since = now  # a task handed over during start-up is timed from here
        elif kind == "row":
            if slot is not None:
                slot.done_keys.add(key_of(payload))
                slot.provisional.pop(key_of(payload), None)
                slot.since = now
            self.sinks.rows([payload])
        elif kind == "fatal":
            if slot is not None:
                slot.fatal = tuple(payload)  # type: ignore[assignment]
        elif kind == "measured":
            if slot is not None:
                slot.provisional[key_of(payload)] = payload
                slot.since = now
        elif kind == "hessian":
            if slot is not None:
                dtype, ok, value = payload
                slot.hessians[dtype] = (ok, value)
                slot.since = now
        elif kind == "start":
            if slot is not None:
                slot.key, slot.since = payload, now
            if self.sinks.started is not None:
                self.sinks.started(payload)
        elif kind == "scale":
            if self.sinks.scale is not None:
                self.sinks.scale(payload)
        elif kind == "env":
            if self.sinks.gpus is not None:
                self.sinks.gpus.extend(g for g in payload if g not in self.sinks.gpus)
        elif kind == "done":
            if slot is not None:
                if slot.provisional:
                    # judged by an earlier worker, not measured again by this one: kept as they were
                    self.sinks.rows(list(slot.provisional.values()))
                slot.task, slot.key, slot.provisional, slot.hessians = None, None, {}, {}
            if self.sinks.progress:
                self.sinks.progress(payload)

    def check(self, i: int, slot: _Slot) -> None:
        """Stop a worker past its budget; record what a stopped or dead worker had in flight; replace it."""
        config = self.config
        died = not slot.process.is_alive()
        now = time.monotonic()
        if slot.ready:
            overdue = bool(config.timeout_s) and now - slot.since > config.timeout_s + GRACE_S
        else:
            overdue = bool(config.timeout_s) and now - slot.started > STARTUP_TIMEOUT_S
        if not (died or overdue):
            return
        if overdue and not died:
            slot.process.kill()
            slot.process.join(timeout=5)
        self.drain(slot)  # what it wrote before it ended: its last row, the start of what crashed
        if slot.task is None:  # it finished its case after all
            self.replace(i)
            return
        if isinstance(slot.task[2], ScaleTask):
            self.sinks.tell(f"diffbench: the scaling study of {slot.task[1]!r} did not finish; the report has no "
                            "scaling section")
            self.replace(i)
            return
        name = slot.task[1]
        if slot.key is None:
            self.early_deaths[name] = self.early_deaths.get(name, 0) + 1
        if self.early_deaths.get(name, 0) >= 2:
            # it dies before measuring anything (loading the file, starting up): do not loop
            what = _fatal_reason(slot, config.memory_bytes) or death_reason(slot.process.exitcode)[0] if died else \
                "the worker process was stopped after hanging"
            self.sinks.rows([case_note(self.measured[name], "load", f"{what}, twice, before measuring this case: "
                                                                     "loading it crashes, exits or hangs the "
                                                                     "interpreter",
                                       Cause.RAISED if died else Cause.TIME_BUDGET)])
            if self.sinks.progress:
                self.sinks.progress(name)
        else:
            _recover(slot, died, config, self.pending, self.sinks.rows, self.measured[name], self.sinks.progress,
                     self.sinks.tell)
        self.replace(i)

    def shut_down(self) -> None:
        for slot in self.slots:
            if slot.process.is_alive():
                slot.tasks.put(None)
        for slot in self.slots:
            slot.process.join(timeout=5)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
            _end_group(slot.process)
            if slot.events is not None:
                slot.events.close()


def _first_named(cases: list[Case], name: str) -> Case | None:
    return next((one for one in cases if one.name == name), None)


def _by_wid(slots: list[_Slot], wid: tuple[int, int]) -> _Slot | None:
    for slot in slots:
        if slot.wid == wid:
            return slot
    return None


def _end_group(process: Any) -> None:
    """End every process left in the process group a worker led (children a case started)."""
    pid = getattr(process, "pid", None)
    if not pid or not hasattr(os, "killpg"):
        return
    # a worker that never reached ``os.setsid`` leads no group: ESRCH, nothing is signalled
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def _fatal_reason(slot: _Slot, budget: int | None) -> str | None:
    """What the worker said ended it outside any measurement, for people, or None; ``budget`` is the
    worker's memory budget in bytes."""
    if slot.fatal is None:
        return None
    text, memory = slot.fatal
    if memory:
        return (f"the worker process ran out of memory ({text}) outside a measurement" +
                (f"; its budget is {budget / 2**30:.3g} GiB (--memory)" if budget else ""))
    return f"the worker process failed outside a measurement: {text}"


def death_reason(code: int | None) -> tuple[str, bool]:
    """How a worker that ended with exit status ``code`` died, for people, and whether the case itself
    ended it (an exit with a status: ``os._exit(n)``, which every method of the case would repeat)
    rather than one method (a signal: a crash in native code, or the out-of-memory killer)."""
    if code is None:
        return "the worker process vanished", False
    if code >= 0:
        return (f"the case ended the worker process with exit code {code} (os._exit({code}), or a native "
                "library calling exit)"), True
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    if -code == getattr(signal, "SIGKILL", 9):
        return (f"the worker process was killed by {name}, most often the kernel's out-of-memory killer: the case "
                "needed more memory than the machine could give (see --memory)"), False
    if -code in (getattr(signal, "SIGSEGV", 11), getattr(signal, "SIGBUS", 7), getattr(signal, "SIGABRT", 6),
                 getattr(signal, "SIGFPE", 8), getattr(signal, "SIGILL", 4)):
        return f"the worker process crashed with {name} (a crash in native code)", False
    return f"the worker process was ended by {name}", False


def _recover(slot: _Slot, died: bool, config: Config, pending: deque[tuple[Any, ...]],
             on_rows: Callable[[list[dict[str, Any]]], None], case: Case,
             progress: Callable[[str], None] | None, tell: Callable[[str], None]) -> None:
    """Record what happened to the unit in flight, keep the rows measured before it, and queue the
    rest of its case. A timeout is charged to the unit that ran past it alone; a death the case
    itself caused (an exit status) to every unit of the case not yet measured."""
    file, name, skip, ref_problem, failed = slot.task[:5]  # type: ignore[misc]
    key = slot.key
    whole_case = False
    if died and slot.fatal is not None:
        reason = _fatal_reason(slot, config.memory_bytes)
        status, cause = Status.ERROR, Cause.MEMORY if slot.fatal[1] else Cause.RAISED
        advice = "raise --memory or shrink the case" if slot.fatal[1] else "report it with the case that caused it"
    elif died:
        reason, whole_case = death_reason(slot.process.exitcode)
        # the reference and the input check run the case's function in pure Python and NumPy: a death
        # there is the case's own, and would repeat under every method
        whole_case = whole_case or (key is not None and key[1] in ("reference", CASE_NOTE))
        status, cause = Status.ERROR, Cause.RAISED
        advice = "fix the case"
    else:
        reason = f"ran past --timeout {config.timeout_s:g} s and was stopped"
        status, cause = Status.TIMEOUT, Cause.TIME_BUDGET
        advice = "raise --timeout or shrink the case"
    # judged rows whose timing never came: measured again by the fresh worker, so that they get their times,
    # unless what stopped this worker would stop them too; then kept as they are, with the note they carry
    provisional = {k: row for k, row in slot.provisional.items() if k != key}
    skip = set(skip) | slot.done_keys
    if key is not None and key[1] == SWEEP:
        # every row of the case is in; only the step-size sweep (an illustration) is missing
        if provisional:
            on_rows(list(provisional.values()))
        tell(f"diffbench: case {name!r}: the step-size sweep: {reason}; the report shows no sweep for it")
        if progress:
            progress(name)
        return
    failed = dict(failed)
    hessians = dict(slot.hessians)
    if whole_case:
        failed["*"] = (status, reason, cause)
    if key is not None and key[1] == "reference" and key[5] == 2 and not died:
        # the reference Hessian is diffbench's own work: no method is charged; the second-order rows say that
        # their accuracy was not checked
        hessians[key[3]] = (False, f"the certified reference Hessian {reason}")
    elif key is None or key[1] == "reference":
        ref_problem = Missing(f"the certified reference: {reason}", cause) if key is not None else ref_problem
        if key is None:
            failed = {m: (status, f"{reason} while the case was starting", cause) for m in config.methods}
        else:
            failed["symbolic"] = (status, ref_problem.text, cause)
    elif key[1] == CASE_NOTE:  # checking the case's inputs (diffbench.isolation.mutated_inputs)
        note = case_note(case, key[2], f"evaluating the case once with NumPy: {reason}; {advice}", cause)
        note.status = status
        on_rows([note])
        skip.add(key)
    else:
        _, method, variant, dtype, device, order = key
        row = row_of(case, method, variant, dtype, device, order, status=status, cause=cause,
                     diagnosis=f"{method}/{variant} in {dtype}: {reason}; {advice}")
        on_rows([row])
        skip.add(key)
        if died and not whole_case:
            # a crash of the method's native code would repeat for its other variants
            failed[method] = (status, f"{method}/{variant} in {dtype}: {reason}", cause)
        elif not died:
            # a variant that ran past the budget would again in another dtype; the method's other
            # variants (eager next to a slow-compiling xla), and its other order, may well finish
            failed[(method, variant, order)] = (status, f"{method}/{variant} in {dtype}: {reason}", cause)
    # a row judged with a reference that is now missing, or of a method that is now failed, is not measured again
    again = {} if ref_problem is not None or "*" in failed else \
        {k: row for k, row in provisional.items() if k[1] not in failed and (k[1], k[2], k[5]) not in failed}
    kept = [row for k, row in provisional.items() if k not in again]
    if kept:
        on_rows(kept)
    skip |= {key_of(row) for row in kept}
    pending.appendleft((file, name, skip, ref_problem, failed, again, hessians))
    tell(f"diffbench: case {name!r}: {reason}; continuing with a fresh worker")
