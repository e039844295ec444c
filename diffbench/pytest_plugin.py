"""pytest plugin (entry point ``pytest11``): collect diffbench cases as test items.

``pytest --diffbench-cases PATH`` turns every case in PATH (a file or a folder) into
one item per method, variant and dtype, with ids like
``rosenbrock[tape-function-float32]``. Each item measures its row and asserts the
status the case expects (``ok`` unless the case says otherwise with ``expect=``).
This module imports nothing heavy: TensorFlow loads only when a tape item runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from .errors import CaseFailure
from .results import Status


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("diffbench", "gradient checks with diffbench")
    group.addoption("--diffbench-cases", action="append", default=[], metavar="PATH",
                    help="collect the diffbench cases in PATH (a .py file or a folder) as test items")
    group.addoption("--diffbench-methods", default="symbolic,tape,finite", metavar="M1,M2",
                    help="methods to check for collected cases (default symbolic,tape,finite)")
    group.addoption("--diffbench-dtypes", default="float32,float64", metavar="D1,D2",
                    help="dtypes to check for collected cases (default float32,float64)")


def _roots(config: Any) -> list[Path]:
    return [Path(p).resolve() for p in config.getoption("diffbench_cases")]


def pytest_configure(config: Any) -> None:
    for root in _roots(config):
        if not root.exists():
            raise pytest.UsageError(f"--diffbench-cases: no file or folder at {root}")
        if str(root) not in config.args:
            config.args.append(str(root))


def pytest_collect_file(file_path: Path, parent: Any) -> Any:
    roots = _roots(parent.config)
    if file_path.suffix == ".py" and not file_path.name.startswith("_") and any(
            file_path.resolve() == r or r in file_path.resolve().parents for r in roots):
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFile(pytest.File):
    """A case file: one item per case × method × variant × dtype."""

    def collect(self) -> Iterator[pytest.Item]:
        from .case import load_cases
        from .engines import get_engine

        methods = [m.strip() for m in self.config.getoption("diffbench_methods").split(",") if m.strip()]
        dtypes = [d.strip() for d in self.config.getoption("diffbench_dtypes").split(",") if d.strip()]
        for case in load_cases(self.path):
            if case.problem:
                yield CaseItem.from_parent(self, name=f"{case.name}[load]", case=case, unit=None)
                continue
            for method in methods:
                for variant in get_engine(method).variants():
                    for dtype in dtypes:
                        yield CaseItem.from_parent(self, name=f"{case.name}[{method}-{variant}-{dtype}]", case=case,
                                                   unit=(method, variant, dtype))


class CaseItem(pytest.Item):
    """One row of one case, asserted against the case's expected status."""

    def __init__(self, *, case: Any, unit: tuple[str, str, str] | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case, self.unit = case, unit

    def runtest(self) -> None:
        if self.unit is None:
            raise CaseFailure(f"the case cannot run: {self.case.problem}")
        from .harness import measure_one

        method, variant, dtype = self.unit
        from .case import matches

        row = measure_one(self.case, method, variant, dtype)
        expected = self.case.expected_status(method, variant, dtype)
        if row["status"] == Status.SKIPPED and Status.SKIPPED not in expected.split("|"):
            pytest.skip(f"{method}/{variant} {dtype}: {row.get('diagnosis')}")
        if not matches(row["status"], expected):
            detail = f"relative error {row['rel_error']:.3g}; " if row.get("rel_error") == row.get("rel_error") and \
                row.get("rel_error") is not None else ""
            raise CaseFailure(f"{self.case.name} {method}/{variant} {dtype}: expected status {expected!r}, got "
                              f"{row['status']!r}; {detail}{row.get('diagnosis') or 'no diagnosis'}")

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, max(self.case.line - 1, 0), self.name
