"""Differential fuzzing: random expressions, every method, one 50-digit reference.

Expressions and points come from Hypothesis strategies (:func:`expressions`,
:func:`points`, :func:`examples`) over the operations in :data:`UNARY` and
:data:`BINARY`, the inputs ``x[i]`` and two-decimal constants. Each example becomes a
case, differentiated by symbolic, tape and finite differences in float64 and checked
against the reference. A disagreement is *explained* when its row's structured fields
say why (:func:`unexplained`: a kink or singularity, an overflow, finite differences
within their own error estimate); anything else, and any crash of the harness, is a
finding, shrunk by Hypothesis and written out as a ready-to-paste case.

Hypothesis stops a ``@given`` run at its first failure, so a run is two phases that
together keep every finding:

1. **explore** — one ``@given`` run of ``n`` examples whose test never fails: it measures
   each example, counts the explained disagreements and records every finding (with the
   failing method and variant, or the exception type of a crash). The run is seeded with
   ``hypothesis.seed(seed)`` and has no example database, so ``--n`` and ``--seed``
   reproduce it (Hypothesis adapts its generation to ``n``: a shorter run is not a prefix
   of a longer one).
2. **shrink** — each recorded finding alone: ``hypothesis.find`` searches
   :func:`reductions` of its expression (every node kept, replaced by one of its
   children's reductions, or by an input) for one that fails *the same way* (same
   method and variant, or same exception type) at the same point, and Hypothesis's
   shrinker minimises it. The reductions are ordered so that smaller choices give smaller
   trees. Should the search not meet a failing reduction within its budget, the finding
   keeps its original expression: shrinking may fail to simplify, never lose a finding.
   Findings that shrink to the same expression at the same point are written once.

The point is not shrunk: moving it changes which disagreement one sees.
"""

from __future__ import annotations

import random
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from hypothesis import HealthCheck, Phase, Verbosity, find, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import HypothesisWarning, NoSuchExample

from .engines import known_info
from .results import FD_CAUSES, FUNCTION_CAUSES, Cause, Status

UNARY = ["exp", "sin", "cos", "tanh", "log1p_sq", "sqrt_1p_sq", "square", "neg", "atan", "log_abs1p"]
BINARY = ["+", "-", "*", "safe_div"]
#: the most inputs, and leaves, of a generated expression
MAX_INPUTS = 3
MAX_LEAVES = 12
#: how many reductions the shrinking of one finding may try before it settles for the original
SHRINK_EXAMPLES = 200
#: statuses that are never a finding
_FINE = frozenset({Status.OK, Status.UNDEFINED, Status.SKIPPED, Status.UNCERTAIN})
#: settings of every Hypothesis run here: nothing stored between runs (the seed alone reproduces one),
#: no deadline and no health checks (a measurement takes what it takes), no output
_QUIET = dict(database=None, deadline=None, suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)


@dataclass(frozen=True)
class Node:
    """An expression tree node: an input x[i], a constant, or an operation on children."""

    op: str
    children: tuple["Node", ...] = ()
    value: float = 0.0

    def source(self) -> str:
        if self.op == "input":
            return f"x[{int(self.value)}]"
        if self.op == "const":
            return f"({self.value!r})"  # parenthesised: -2.5 ** 2 would mean -(2.5 ** 2)
        a = [c.source() for c in self.children]
        return {
            "+": lambda: f"({a[0]} + {a[1]})", "-": lambda: f"({a[0]} - {a[1]})", "*": lambda: f"({a[0]} * {a[1]})",
            "safe_div": lambda: f"({a[0]} / (1 + {a[1]} ** 2))", "neg": lambda: f"(-{a[0]})",
            "square": lambda: f"({a[0]} ** 2)", "log1p_sq": lambda: f"xp.log1p({a[0]} ** 2)",
            "sqrt_1p_sq": lambda: f"xp.sqrt(1 + {a[0]} ** 2)", "log_abs1p": lambda: f"xp.log(1 + xp.abs({a[0]}))",
        }.get(self.op, lambda: f"xp.{self.op}({a[0]})")()

    def size(self) -> int:
        return 1 + sum(c.size() for c in self.children)

    def subtrees(self) -> list["Node"]:
        out = [self]
        for c in self.children:
            out.extend(c.subtrees())
        return out


# --------------------------------------------------------------------------- strategies
def _inputs(n_inputs: int) -> st.SearchStrategy[Node]:
    return st.integers(0, n_inputs - 1).map(lambda i: Node("input", value=i))


def expressions(n_inputs: int, max_leaves: int = MAX_LEAVES) -> st.SearchStrategy[Node]:
    """Expression trees over ``x[0]`` … ``x[n_inputs - 1]``, constants in [-3, 3] with two
    decimals, and the operations of :data:`UNARY` and :data:`BINARY`; at most ``max_leaves`` leaves."""
    constants = st.integers(-300, 300).map(lambda k: Node("const", value=k / 100))

    def extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        unary = st.builds(lambda op, a: Node(op, (a,)), st.sampled_from(UNARY), children)
        binary = st.builds(lambda op, a, b: Node(op, (a, b)), st.sampled_from(BINARY), children, children)
        return unary | binary

    return st.recursive(_inputs(n_inputs) | constants, extend, max_leaves=max_leaves)


def points(n_inputs: int) -> st.SearchStrategy[list[float]]:
    """Points in [-2, 2]^n_inputs with three decimals."""
    coordinate = st.integers(-2000, 2000).map(lambda k: k / 1000)
    return st.lists(coordinate, min_size=n_inputs, max_size=n_inputs)


def examples() -> st.SearchStrategy[tuple[Node, list[float]]]:
    """(expression, point) pairs over one to :data:`MAX_INPUTS` inputs."""
    return st.integers(1, MAX_INPUTS).flatmap(lambda n: st.tuples(expressions(n), points(n)))


def reductions(tree: Node, n_inputs: int) -> st.SearchStrategy[Node]:
    """Trees obtained from ``tree`` by replacing any of its nodes by an input or by a
    reduction of one of its children; ``tree`` itself is one of them. Smaller choices give
    smaller trees (an input first, then a child, then the node kept), so Hypothesis's
    shrinker moves towards small expressions."""
    keep_weight = 3  # keeping a node is drawn more often, so the search meets the failing part

    @st.composite
    def reduced(draw: Any, node: Node) -> Node:
        pick = draw(st.integers(0, len(node.children) + keep_weight))
        if pick == 0:
            return draw(_inputs(n_inputs))
        if pick <= len(node.children):
            return draw(reduced(node.children[pick - 1]))
        if not node.children:
            return node
        return Node(node.op, tuple(draw(reduced(c)) for c in node.children), node.value)

    return reduced(tree)


# --------------------------------------------------------------------------- cases and verdicts
def case_source(tree: Node, name: str, point: list[float]) -> str:
    """Ready-to-paste case source for an expression."""
    return (f"@case(inputs={{\"x\": {point!r}}}, tags=[\"fuzz\"])\n"
            f"def {name}(x, xp):\n    return xp.sum(x * 0.0) + {tree.source()}\n")


def make(tree: Node, name: str, point: list[float]) -> Any:
    """Build the Case for ``tree`` at ``point`` (the source is kept for the finding)."""
    from .case import case

    namespace: dict[str, Any] = {"case": case}
    exec(compile(case_source(tree, name, point), f"<fuzz {name}>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace[name]


def outcome(tree: Node, name: str, point: list[float], timeout: float) -> tuple[list[Any], str | None]:
    """Rows for the expression and, when methods disagree unexplained, a one-line reason."""
    from .harness import make_config, measure_case

    config = make_config(["symbolic", "tape", "finite"], ["float64"],
                         {"symbolic": ["numpy"], "tape": ["eager"], "finite": ["central"]}, order2=False,
                         timeout=timeout, timing=False, sweep=False, devices=("CPU",))
    rows: list[Any] = []
    measure_case(make(tree, name, point), config, rows.append)
    return rows, unexplained(rows)


def is_explained(row: Mapping[str, Any]) -> bool:
    """Whether a row is fine or its disagreement has a known cause: its status is ok, undefined,
    skipped or uncertain; its cause is an overflow or the function's own (``FUNCTION_CAUSES``); or it is an approximate (finite-difference)
    row that is inaccurate for one of the method's own reasons or within 10× its own error estimate."""
    status, cause = row["status"], row.get("cause")
    if status in _FINE or cause == Cause.OVERFLOW:
        return True
    if status == Status.INACCURATE and cause in FUNCTION_CAUSES:
        return True  # the function as written is to blame (conditioning, a cancelling formula), not a method
    if status != Status.INACCURATE:
        return False
    info = known_info(row["method"])
    if info is None or info.is_exact(row["variant"]):
        return False
    if cause in FD_CAUSES:
        return True
    estimate, error = row.get("error_estimate"), row.get("rel_error")
    return estimate is not None and error is not None and error <= 10 * max(float(estimate), 1e-300)


def first_unexplained(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first row whose disagreement has no known explanation, or None."""
    return next((row for row in rows if not is_explained(row)), None)


def unexplained(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Why these rows are a finding, or None when every non-ok row has a known explanation."""
    row = first_unexplained(rows)
    if row is None:
        return None
    cause = f" ({row.get('cause')})" if row.get("cause") else ""
    return f"{row['method']}/{row['variant']}: {row['status']}{cause} — {str(row.get('diagnosis') or '')[:200]}"


@dataclass(frozen=True)
class Verdict:
    """What one expression does: ``kind`` says how it fails (None: it does not), ``reason`` in words,
    ``explained`` whether a disagreement was found and explained."""

    kind: tuple[str, ...] | None
    reason: str | None
    explained: bool = False


class _Judge:
    """Verdicts of expressions at one point, cached by source (shrinking meets the same trees often)."""

    def __init__(self, name: str, point: list[float], timeout: float) -> None:
        self.name, self.point, self.timeout = name, point, timeout
        self._seen: dict[str, Verdict] = {}

    def __call__(self, tree: Node) -> Verdict:
        key = tree.source()
        if key not in self._seen:
            self._seen[key] = verdict(tree, self.name, self.point, self.timeout)
        return self._seen[key]


def verdict(tree: Node, name: str, point: list[float], timeout: float) -> Verdict:
    """Measure ``tree`` at ``point``: a crash of the harness is a finding of its exception type,
    an unexplained row one of its method and variant."""
    try:
        rows, reason = outcome(tree, name, point, timeout)
    except Exception as exc:  # noqa: BLE001 - a harness crash is itself a finding
        return Verdict(("crash", type(exc).__name__), f"harness crash: {type(exc).__name__}: {exc}")
    row = first_unexplained(rows)
    if row is None:
        return Verdict(None, None, any(r["status"] not in (Status.OK, Status.SKIPPED) for r in rows))
    return Verdict(("row", str(row["method"]), str(row["variant"])), reason)


@contextmanager
def _quiet_hypothesis() -> Iterator[None]:
    # importing TensorFlow during the first measurement raises the recursion limit, which Hypothesis reports
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The recursion limit will not be reset", HypothesisWarning)
        yield


def shrink(tree: Node, name: str, point: list[float], timeout: float, seed: int = 0,
           kind: tuple[str, ...] | None = None) -> Node:
    """The smallest reduction of ``tree`` Hypothesis finds that fails as ``tree`` does (``kind``,
    measured when not given) at ``point``; ``tree`` itself when it does not fail or no failing
    reduction turns up within :data:`SHRINK_EXAMPLES` tries."""
    judge = _Judge(name, point, timeout)
    kind = kind or judge(tree).kind
    if kind is None:
        return tree
    with _quiet_hypothesis():
        try:
            return find(reductions(tree, len(point)), lambda t: judge(t).kind == kind,
                        settings=settings(max_examples=SHRINK_EXAMPLES, phases=[Phase.generate, Phase.shrink],
                                          **_QUIET),
                        random=random.Random(seed))
        except NoSuchExample:
            return tree


def explore(n: int, seed: int, visit: Callable[[Node, list[float]], None]) -> None:
    """Call ``visit(tree, point)`` for ``n`` examples drawn from :func:`examples`, the same
    ones for the same ``seed``."""
    if n <= 0:
        return

    @settings(max_examples=n, phases=[Phase.generate], **_QUIET)
    @hypothesis_seed(seed)
    @given(examples())
    def run(example: tuple[Node, list[float]]) -> None:
        visit(*example)

    with _quiet_hypothesis():
        run()


@dataclass(frozen=True)
class Finding:
    """One finding: the case name, its (shrunk) expression and point, and why it is one."""

    name: str
    tree: Node
    point: list[float]
    reason: str


def fuzz(n: int, seed: int, out: Path, timeout: float = 30.0,
         progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run ``n`` random expressions; write findings.py and fuzz.md into ``out``; return a summary
    (``n`` expressions measured, ``findings`` written (distinct after shrinking), ``explained``
    disagreements, harness ``crashes``)."""
    from .report import atomic_write, md

    found: list[tuple[str, Node, list[float], Verdict]] = []
    counts = {"n": 0, "explained": 0, "crashes": 0}
    began = time.perf_counter()

    def visit(tree: Node, point: list[float]) -> None:
        name = f"fuzz_{seed}_{counts['n']}"
        counts["n"] += 1
        result = verdict(tree, name, point, timeout)
        counts["explained"] += result.explained
        if result.kind is not None:
            counts["crashes"] += result.kind[0] == "crash"
            found.append((name, tree, point, result))
        if progress:
            progress(counts["n"], n)

    explore(n, seed, visit)
    findings: dict[tuple[str, tuple[float, ...]], Finding] = {}  # several examples often shrink to one case
    for number, (name, tree, point, result) in enumerate(found):
        small = shrink(tree, name, point, timeout, seed=seed * 100003 + number, kind=result.kind)
        if (small.source(), tuple(point)) in findings:
            continue
        reason = (verdict(small, name, point, timeout).reason if small != tree else None) or result.reason
        findings[small.source(), tuple(point)] = Finding(name, small, point, reason or "")
    lines = ["# diffbench fuzz report", "", f"{counts['n']} random expressions (seed {seed}) in "
             f"{time.perf_counter() - began:.0f} s: {len(findings)} unexplained disagreements, "
             f"{counts['explained']} disagreements explained by a known diagnosis, {counts['crashes']} harness "
             "crashes.", ""]
    source = ["\"\"\"Findings of `python -m diffbench fuzz`: minimal cases where methods disagree unexplained.\"\"\"",
              "", "from diffbench import case", ""]
    for finding in findings.values():
        lines += [f"## {md(finding.name)}", "", f"- expression: `{finding.tree.source()}` at x = {finding.point}",
                  f"- {md(finding.reason)}", ""]
        source += [f"# {finding.reason[:150]}", case_source(finding.tree, finding.name, finding.point)]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "fuzz.md", "\n".join(lines) + "\n")
    atomic_write(out / "findings.py", "\n".join(source) + "\n")
    return {"n": counts["n"], "findings": len(findings), "explained": counts["explained"],
            "crashes": counts["crashes"]}
