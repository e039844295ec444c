"""TensorFlow's start-up lines are silenced wherever it is first imported once diffbench is, and replayed when
its import fails. A stand-in ``tensorflow`` package (first on the path) writes to file descriptor 2 the way
TensorFlow's C++ start-up does, so the test knows exactly what was written."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

FAKE = '''
import os
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
if os.environ.get("FAKE_TF_FAILS"):
    raise ImportError("libcudart.so: cannot open shared object file")
'''


def _python(code, tmp_path, **env):
    package = tmp_path / "fake" / "tensorflow"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(FAKE)
    environment = {k: v for k, v in os.environ.items() if k != "DIFFBENCH_VERBOSE"}
    environment.update(PYTHONPATH=f"{tmp_path / 'fake'}{os.pathsep}{ROOT}", **env)
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300)


def test_import_diffbench_then_tensorflow_prints_nothing(tmp_path):
    out = _python("import diffbench, tensorflow, sys; print('after', file=sys.stderr)", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "after\n"


def test_a_failing_import_replays_what_it_wrote(tmp_path):
    out = _python("import diffbench, tensorflow", tmp_path, FAKE_TF_FAILS="1")
    assert out.returncode == 1
    assert "before absl::InitializeLog()" in out.stderr and "libcudart.so" in out.stderr


def test_verbose_shows_the_start_up_lines(tmp_path):
    out = _python("import diffbench, tensorflow", tmp_path, DIFFBENCH_VERBOSE="1")
    assert out.returncode == 0 and "before absl::InitializeLog()" in out.stderr
