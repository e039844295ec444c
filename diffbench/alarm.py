"""A timer signal that interrupts Python code in the main thread: the one mechanism behind every
in-process time budget (the harness's per-measurement budget, the door's load-time evaluation)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def alarm(seconds: float | None, expire: Callable[[int, Any], None]) -> Iterator[None]:
    """Call ``expire(signum, frame)`` from SIGALRM after ``seconds`` (it raises to interrupt the code
    running then, or re-arms the timer). A no-op without ``seconds``, outside the main thread, or where the
    platform has no interval timer. The previous handler is restored on exit."""
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
