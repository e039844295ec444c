"""A case that misbehaves on demand: DIFFBENCH_PROBE picks how, so one baseline serves every probe.

The misbehaviour happens only where the function is evaluated on float64 arrays (the finite
differences), so the reference and the symbolic rows still measure normally; ``os_exit_always``
exits wherever the function is evaluated, the 50-digit reference included.
"""

import os
import signal
import sys
import time

import numpy as np

from diffbench import case

PROBE = os.environ.get("DIFFBENCH_PROBE", "")


def _misbehave(x):
    if PROBE == "os_exit_always":
        os._exit(0)
    if not (isinstance(x, np.ndarray) and x.dtype == np.float64):
        return
    if PROBE == "sys_exit":
        sys.exit(0)
    if PROBE == "os_exit":
        os._exit(0)
    if PROBE == "native_hang":
        # native code that never returns to the interpreter never runs a Python signal handler;
        # blocking the signals gives the same hang without depending on a particular library
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGINT})
        time.sleep(3600)


@case(inputs={"x": [0.5, -1.0, 2.0]})
def cubic(x, xp):
    _misbehave(x)
    return xp.sum(x**3)
