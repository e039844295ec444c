"""Run cases in worker processes, so that no case can take the run down.

Each worker loads case files itself and measures one case at a time, streaming each
row back as it completes. The parent writes every row to ``results.jsonl`` at once,
kills a worker whose current measurement outlives ``--timeout`` (plus a grace
period), records a ``timeout`` row, or an ``error`` row if the worker died (a crash
in native code), starts a fresh worker, and carries on with the rest of that case.
Ctrl-C stops the workers and returns what finished.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import queue
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .case import Case
from .harness import COLUMNS, Config, _row, key_of

#: extra seconds a worker gets beyond --timeout before it is killed (its own timer fires first)
GRACE_S = 15.0


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to a JSON-lines file and flush, so a crash loses nothing written."""
    with path.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({k: _jsonable(row.get(k)) for k in COLUMNS}) + "\n")
        handle.flush()


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


def _worker(wid: tuple[int, int], tasks: Any, events: Any, config: Config) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    from .case import load_cases
    from .harness import measure_case

    loaded: dict[str, dict[str, Case]] = {}
    while True:
        task = tasks.get()
        if task is None:
            return
        file, name, skip, ref_problem, failed = task
        if file not in loaded:
            loaded[file] = {c.name: c for c in load_cases(file)}
        if isinstance(skip, ScaleTask):
            events.put(("scale", wid, _scale_rows(loaded[file][name], skip)))
            events.put(("done", wid, f"scaling of {name}"))
            continue
        one = loaded[file][name]
        measure_case(one, config, lambda row: events.put(("row", wid, row)), skip=skip,
                     on_start=lambda key: events.put(("start", wid, key)), reference_problem=ref_problem,
                     failed=failed)
        if "tensorflow" in sys.modules:
            from .engines.tape import gpu_devices

            events.put(("env", wid, list(gpu_devices())))
        events.put(("done", wid, name))


@dataclass(frozen=True)
class ScaleTask:
    """A small scaling study run by a worker after the cases (for the report's scaling section)."""

    sizes: tuple[int, ...]
    methods: tuple[str, ...]
    budget_s: float
    variants: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _scale_rows(case: Case, task: ScaleTask) -> list[dict[str, Any]]:
    from .scale import study

    try:
        df = study(case, list(task.sizes), list(task.methods), budget_s=task.budget_s,
                   variants=dict(task.variants) or None)
    except Exception as exc:  # noqa: BLE001 - the section then says why it is missing
        return [{"case": case.name, "status": "error", "diagnosis": f"{type(exc).__name__}: {exc}"}]
    return [{k: _jsonable(v) for k, v in row.items()} for row in df.to_dict("records")]


@dataclass
class _Slot:
    wid: tuple[int, int]
    process: Any
    tasks: Any
    task: tuple[Any, ...] | None = None
    key: tuple[Any, ...] | None = None
    since: float = 0.0
    done_keys: set[tuple[Any, ...]] = field(default_factory=set)


def run_isolated(cases: list[Case], config: Config, jobs: int, on_rows: Callable[[list[dict[str, Any]]], None],
                 skip: set[tuple[Any, ...]], progress: Callable[[str], None] | None = None,
                 gpus: list[str] | None = None, scaling: tuple[Case, ScaleTask] | None = None,
                 on_scale: Callable[[list[dict[str, Any]]], None] | None = None) -> bool:
    """Measure ``cases`` in ``jobs`` worker processes; hand rows to ``on_rows`` as they arrive.

    GPUs the workers' TensorFlow sees are appended to ``gpus``. Returns False if
    interrupted (Ctrl-C), True when every case finished.
    """
    context = mp.get_context("spawn")
    events = context.Queue()
    pending: deque[tuple[Any, ...]] = deque()
    for one in cases:
        if one.problem or one.func is None or not one.source_file:
            row = _row(one, "case", "load", "-", "-", 1, status="error", diagnosis=one.problem or "no function")
            if key_of(row) not in skip:
                on_rows([row])
            if progress:
                progress(one.name)
            continue
        pending.append((one.source_file, one.name, skip, None, {}))
    if scaling is not None and scaling[0].source_file:
        # first in the queue: it overlaps the cases instead of lengthening the run's tail
        pending.appendleft((scaling[0].source_file, scaling[0].name, scaling[1], None, {}))
    slots: list[_Slot] = []
    early_deaths: dict[str, int] = {}

    generation = 0

    def start_slot(index: int) -> _Slot:
        nonlocal generation
        generation += 1
        tasks = context.Queue()
        wid = (index, generation)
        process = context.Process(target=_worker, args=(wid, tasks, events, config), daemon=True)
        process.start()
        return _Slot(wid, process, tasks)

    def replace(index: int) -> None:
        old = slots[index]
        if old.process.is_alive():
            old.process.kill()
        old.process.join(timeout=5)
        slots[index] = start_slot(index)

    try:
        for index in range(max(1, min(jobs, len(pending)))):
            slots.append(start_slot(index))
        while pending or any(s.task for s in slots):
            for i, slot in enumerate(slots):
                if slot.task is None and pending:
                    slot.task, slot.key, slot.since, slot.done_keys = pending.popleft(), None, time.monotonic(), set()
                    slot.tasks.put(slot.task)
            try:
                kind, wid, payload = events.get(timeout=0.5)
            except queue.Empty:
                kind = None
            if kind == "row":
                slot = _by_wid(slots, wid)
                if slot is not None:
                    slot.done_keys.add(key_of(payload))
                on_rows([payload])
            elif kind == "start":
                slot = _by_wid(slots, wid)
                if slot is not None:
                    slot.key, slot.since = payload, time.monotonic()
            elif kind == "scale":
                if on_scale is not None:
                    on_scale(payload)
            elif kind == "env":
                if gpus is not None:
                    gpus.extend(g for g in payload if g not in gpus)
            elif kind == "done":
                slot = _by_wid(slots, wid)
                if slot is not None:
                    slot.task, slot.key = None, None
                if progress:
                    progress(payload)
            for i, slot in enumerate(slots):
                if slot.task is None:
                    continue
                died = not slot.process.is_alive()
                overdue = config.timeout_s and time.monotonic() - slot.since > config.timeout_s + GRACE_S
                if (died or overdue) and isinstance(slot.task[2], ScaleTask):
                    print(f"diffbench: the scaling study of {slot.task[1]!r} did not finish; the report has no "
                          "scaling section", file=sys.stderr)
                    replace(i)
                    continue
                if died or overdue:
                    name = slot.task[1]
                    if slot.key is None:
                        early_deaths[name] = early_deaths.get(name, 0) + 1
                    if early_deaths.get(name, 0) >= 2:
                        # it dies before measuring anything (loading the file, starting up): do not loop
                        fake = Case(name=name, func=None, source_file=slot.task[0])
                        on_rows([_row(fake, "case", "load", "-", "-", 1, status="error",
                                      diagnosis=f"the worker process died twice (exit code {slot.process.exitcode}) "
                                                "before measuring this case: loading it crashes the interpreter")])
                        if progress:
                            progress(name)
                    else:
                        _recover(slot, died, config, pending, on_rows)
                    replace(i)
    except KeyboardInterrupt:
        for slot in slots:
            if slot.process.is_alive():
                slot.process.kill()
        return False
    finally:
        for slot in slots:
            if slot.process.is_alive():
                slot.tasks.put(None)
        for slot in slots:
            slot.process.join(timeout=5)
            if slot.process.is_alive():
                slot.process.kill()
    return True


def _by_wid(slots: list[_Slot], wid: tuple[int, int]) -> _Slot | None:
    # a killed worker's last events may still be queued: they carry an old generation
    for slot in slots:
        if slot.wid == wid:
            return slot
    return None


def _recover(slot: _Slot, died: bool, config: Config, pending: deque[tuple[Any, ...]],
             on_rows: Callable[[list[dict[str, Any]]], None]) -> None:
    """Record what happened to the unit in flight and queue the rest of its case."""
    file, name, skip, ref_problem, failed = slot.task  # type: ignore[misc]
    key = slot.key
    code = slot.process.exitcode
    if died:
        status, reason = "error", (f"the worker process died (exit code {code}) — a crash in native code or "
                                   "the interpreter")
    else:
        status, reason = "timeout", f"ran past --timeout {config.timeout_s:g} s and was stopped"
    skip = set(skip) | slot.done_keys
    failed = dict(failed)
    if key is None or key[1] == "reference":
        ref_problem = f"the 50-digit reference {reason}" if key is not None else ref_problem
        if key is None:
            failed = {m: (status, f"the case {reason} while starting") for m in config.methods}
        else:
            failed["symbolic"] = (status, ref_problem)
    else:
        _, method, variant, dtype, device, order = key
        fake = Case(name=name, func=None, source_file=file)
        row = _row(fake, method, variant, dtype, device, order, status=status,
                   diagnosis=f"{method}/{variant} in {dtype} {reason}; raise --timeout or fix the case")
        row["source_hash"] = ""
        on_rows([row])
        skip.add(key)
        failed[method] = (status, f"{method}/{variant} in {dtype} {reason}")
    pending.appendleft((file, name, skip, ref_problem, failed))
    print(f"diffbench: case {name!r}: {reason}; continuing with a fresh worker", file=sys.stderr)
