"""Differential fuzzing: random expressions, every method, one 50-digit reference.

A seeded generator builds expression trees over the namespace's functions; each
becomes a case, differentiated by symbolic, tape and finite differences in float64
and checked against the reference. A disagreement outside tolerance that no known
diagnosis explains (a kink or singularity, an overflow, finite differences within
their own error estimate) is shrunk to a minimal expression and written out as a
ready-to-paste case.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

UNARY = ["exp", "sin", "cos", "tanh", "log1p_sq", "sqrt_1p_sq", "square", "neg", "atan", "log_abs1p"]
BINARY = ["+", "-", "*", "safe_div"]


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


def generate(rng: random.Random, n_inputs: int, depth: int) -> Node:
    """A random expression tree of at most ``depth`` levels over ``n_inputs`` inputs."""
    if depth <= 0 or rng.random() < 0.25:
        if rng.random() < 0.75:
            return Node("input", value=rng.randrange(n_inputs))
        return Node("const", value=round(rng.uniform(-3, 3), 2))
    if rng.random() < 0.5:
        return Node(rng.choice(UNARY), (generate(rng, n_inputs, depth - 1),))
    return Node(rng.choice(BINARY), (generate(rng, n_inputs, depth - 1), generate(rng, n_inputs, depth - 1)))


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


def outcome(tree: Node, name: str, point: list[float], timeout: float) -> tuple[list[dict[str, Any]], str | None]:
    """Rows for the expression and, when methods disagree unexplained, a one-line reason."""
    from .harness import make_config, measure_case

    config = make_config(["symbolic", "tape", "finite"], ["float64"],
                         {"symbolic": ["numpy"], "tape": ["eager"], "finite": ["central"]}, order2=False,
                         timeout=timeout, timing=False, sweep=False, devices=("CPU",))
    rows: list[dict[str, Any]] = []
    measure_case(make(tree, name, point), config, rows.append)
    return rows, unexplained(rows)


def unexplained(rows: list[dict[str, Any]]) -> str | None:
    """Why these rows are a finding, or None when every non-ok row has a known explanation."""
    for row in rows:
        status, text = row["status"], str(row.get("diagnosis") or "")
        if status in ("ok", "undefined", "skipped", "uncertain"):
            continue
        if "overflow" in text or "invalid value" in text or "divide by zero" in text:
            continue
        if status == "inaccurate" and row["method"] == "finite":
            estimate = row.get("error_estimate")
            if estimate is not None and row["rel_error"] <= 10 * max(float(estimate), 1e-300):
                continue  # within its own error estimate: the method's known limit
            if "dominated by" in text:
                continue
        return f"{row['method']}/{row['variant']}: {status} — {text[:200]}"
    return None


def shrink(tree: Node, name: str, point: list[float], timeout: float) -> Node:
    """Greedily replace subtrees by their children or an input while the finding persists."""
    current = tree
    improved = True
    while improved:
        improved = False
        candidates = []
        for sub in current.subtrees():
            candidates.extend(sub.children)
            candidates.append(Node("input", value=0))
        for sub in sorted(current.subtrees(), key=lambda s: -s.size()):
            for replacement in list(sub.children) + [Node("input", value=0)]:
                if replacement.size() >= sub.size():
                    continue
                trial = _replace(current, sub, replacement)
                if outcome(trial, name, point, timeout)[1]:
                    current, improved = trial, True
                    break
            if improved:
                break
    return current


def _replace(tree: Node, target: Node, replacement: Node) -> Node:
    if tree is target:
        return replacement
    return Node(tree.op, tuple(_replace(c, target, replacement) for c in tree.children), tree.value)


def fuzz(n: int, seed: int, out: Path, timeout: float = 30.0,
         progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run ``n`` random expressions; write findings.py and fuzz.md into ``out``; return a summary."""
    from .report import atomic_write, md

    rng = random.Random(seed)
    findings, explained, crashes = [], 0, 0
    began = time.perf_counter()
    for i in range(n):
        n_inputs = rng.randint(1, 3)
        tree = generate(rng, n_inputs, rng.randint(1, 4))
        point = [round(rng.uniform(-2, 2), 3) for _ in range(n_inputs)]
        name = f"fuzz_{seed}_{i}"
        try:
            rows, reason = outcome(tree, name, point, timeout)
        except Exception as exc:  # noqa: BLE001 - a harness crash is itself a finding
            crashes += 1
            findings.append((name, tree, point, f"harness crash: {type(exc).__name__}: {exc}"))
            continue
        if any(r["status"] not in ("ok", "skipped") for r in rows) and reason is None:
            explained += 1
        if reason:
            small = shrink(tree, name, point, timeout)
            findings.append((name, small, point, outcome(small, name, point, timeout)[1] or reason))
        if progress:
            progress(i + 1, n)
    lines = ["# diffbench fuzz report", "", f"{n} random expressions (seed {seed}) in "
             f"{time.perf_counter() - began:.0f} s: {len(findings)} unexplained disagreements, {explained} "
             f"disagreements explained by a known diagnosis, {crashes} harness crashes.", ""]
    source = ["\"\"\"Findings of `python -m diffbench fuzz`: minimal cases where methods disagree unexplained.\"\"\"",
              "", "from diffbench import case", ""]
    for name, tree, point, reason in findings:
        lines += [f"## {md(name)}", "", f"- expression: `{tree.source()}` at x = {point}", f"- {md(reason)}", ""]
        source += [f"# {reason[:150]}", case_source(tree, name, point)]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "fuzz.md", "\n".join(lines) + "\n")
    atomic_write(out / "findings.py", "\n".join(source) + "\n")
    return {"n": n, "findings": len(findings), "explained": explained, "crashes": crashes}
