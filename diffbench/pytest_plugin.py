"""pytest plugin (entry point ``pytest11``): collect diffbench cases as test items.

``pytest --diffbench-cases PATH`` turns every case in PATH (a file or a folder) into
one item per method, variant and dtype, with ids like
``rosenbrock[tape-function-float32]``. Each item asserts the status the case expects
(``ok`` unless the case says otherwise with ``expect=``) for its row.

Nothing of a case runs in the pytest process: each case file is first loaded once in a
child process (a file that exits or crashes at import fails one item, not the session), and
the rows are measured in an isolated worker process (:mod:`diffbench.runner`), all the
selected items of a file together when its first item runs. A case that ends or hangs
its worker fails its items, and the session goes on.
This module imports nothing heavy: TensorFlow loads only in the worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from .errors import CaseFailure, UsageError
from .results import Status

#: how long loading one case file in the child process may take (TensorFlow's import included)
LOAD_TIMEOUT_S = 300.0


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
        from .selection import probe_case_files

        try:  # in a child process first: a file that ends the process at import must not end pytest
            probe_case_files(self.path, LOAD_TIMEOUT_S)
        except UsageError as exc:
            yield CaseItem.from_parent(self, name=f"{self.path.stem}[load]", case=None, unit=None, problem=str(exc))
            return
        self.selected: set[tuple[str, str, str, str]] = set()
        self.selected_items: list[CaseItem] = []
        self.rows: dict[tuple[Any, ...], Any] | None = None
        methods = [m.strip() for m in self.config.getoption("diffbench_methods").split(",") if m.strip()]
        dtypes = [d.strip() for d in self.config.getoption("diffbench_dtypes").split(",") if d.strip()]
        for case in load_cases(self.path):
            if case.problem:
                yield CaseItem.from_parent(self, name=f"{case.name}[load]", case=case, unit=None)
                continue
            for method in methods:
                engine = get_engine(method)
                # a variant that needs a case tag (tape batch) is an item only of cases with the tag; the variants
                # of vector outputs are items of every case (whether it returns an array is known once it runs)
                needs = engine.info.tag_variants
                for variant in engine.variants():
                    if variant in needs and needs[variant] not in case.tags:
                        continue
                    for dtype in dtypes:
                        yield CaseItem.from_parent(self, name=f"{case.name}[{method}-{variant}-{dtype}]", case=case,
                                                   unit=(method, variant, dtype))


    def measured(self) -> dict[tuple[Any, ...], Any]:
        """The rows of every selected item of this file, by key, measured in a worker process on first use."""
        if self.rows is None:
            from .harness import key_of, make_config
            from .runner import run_isolated

            wanted = {(name, method, variant, dtype, "CPU", 1) for name, method, variant, dtype in self.selected}
            cases = [item.case for item in self.selected_items]
            cases = list({one.name: one for one in cases}.values())
            methods = tuple(dict.fromkeys(key[1] for key in wanted))
            dtypes = tuple(dict.fromkeys(key[3] for key in wanted))
            config = make_config(methods, dtypes, None, order2=False, timing=False, devices=("CPU",), sweep=False)
            everything = {(one.name, method, variant, dtype, "CPU", 1) for one in cases for method in methods
                          for variant in config.variants_of(method) for dtype in dtypes}
            rows: dict[tuple[Any, ...], Any] = {}
            complete = run_isolated(cases, config, 1, lambda new: rows.update((key_of(r), r) for r in new),
                                    everything - wanted)
            if not complete:
                raise KeyboardInterrupt
            self.rows = rows
        return self.rows


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    """Tell each case file which of its items are still selected (after ``-k`` and ``-m``), so that its
    worker measures those only."""
    for item in items:
        if isinstance(item, CaseItem) and item.unit is not None and isinstance(item.parent, CaseFile):
            item.parent.selected.add(item.key[:4])
            item.parent.selected_items.append(item)


def _vector_only(method: str, variant: str) -> bool:
    """Whether the engine declares ``variant`` for vector-output cases only (``EngineInfo.jacobian_variants``):
    a scalar case's worker measures no such row."""
    from .engines import known_info

    info = known_info(method)
    return info is not None and variant in info.jacobian_variants


def _plain(value: Any) -> Any:
    """A status as the plain string it stands for (never an enum's repr)."""
    return getattr(value, "value", value)


class CaseItem(pytest.Item):
    """One row of one case, asserted against the case's expected status."""

    def __init__(self, *, case: Any, unit: tuple[str, str, str] | None, problem: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case, self.unit, self.problem = case, unit, problem

    @property
    def key(self) -> tuple[Any, ...]:
        """The key of the row this item asserts: (case, method, variant, dtype, device, order)."""
        method, variant, dtype = self.unit  # type: ignore[misc]
        return (self.case.name, method, variant, dtype, "CPU", 1)

    def runtest(self) -> None:
        if self.problem is not None:
            raise CaseFailure(self.problem)
        if self.unit is None:
            raise CaseFailure(f"the case cannot run: {self.case.problem}")
        from .case import matches

        method, variant, dtype = self.unit
        row = self.parent.measured().get(self.key)
        if row is None and _vector_only(method, variant):
            pytest.skip(f"{method}/{variant} is measured for cases that return an array; {self.case.name} returns a "
                        "scalar")
        if row is None:
            raise CaseFailure(f"{self.case.name} {method}/{variant} {dtype}: no row came back from the worker "
                              "process that measured it")
        status = _plain(row["status"])
        expected = self.case.expected_status(method, variant, dtype)
        if status == Status.SKIPPED and Status.SKIPPED not in expected.split("|"):
            pytest.skip(f"{method}/{variant} {dtype}: {row.get('diagnosis')}")
        if not matches(status, expected):
            rel_error = row.get("rel_error")
            detail = f"relative error {rel_error:.3g}; " if rel_error is not None and rel_error == rel_error else ""
            raise CaseFailure(f"{self.case.name} {method}/{variant} {dtype}: expected status {_plain(expected)!r}, "
                              f"got {status!r}; {detail}{row.get('diagnosis') or 'no diagnosis'}")

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, max(self.case.line - 1, 0) if self.case is not None else 0, self.name
