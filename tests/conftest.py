import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def library():
    """Every case of the repository's cases/ folder, by name."""
    from diffbench import load_cases

    return {c.name: c for c in load_cases(ROOT / "cases")}
