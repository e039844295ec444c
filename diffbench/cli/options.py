"""What the subcommands share: exit statuses, argparse ``type=`` converters, and the options
several commands take, each defined once."""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import KeywordError, UsageError
from ..harness import DEFAULT_TIMEOUT_S
from ..keywords import KeywordExpression

#: exit codes of ``run`` (documented in the README); ``check`` has its own (see diffbench.testing)
EXIT_OK = 0
EXIT_UNEXPECTED = 1  # --strict: a row's status is not what its case expects
EXIT_USAGE = 2  # bad options, an unusable or locked --out, a --resume folder from other cases
EXIT_UNMEASURED = 4  # the report was written, but no row of some case could be measured (all error/timeout)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); SIGTERM gives 143 (128 + SIGTERM)


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print ``diffbench: message`` on stderr and return ``code``, the exit status to end with."""
    print(f"diffbench: {message}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------- type= converters
def timeout(text: str) -> float:
    """argparse type of --timeout: seconds >= 0 (0 or inf: no limit)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or a positive number of seconds, got {text!r}")
    return 0.0 if math.isinf(value) else value


def jobs(text: str) -> int:
    """argparse type of --jobs: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def memory(text: str) -> int:
    """argparse type of --memory: a size in bytes with an optional K, M, G or T suffix (powers of 1024),
    e.g. ``4G``; ``0`` means no budget."""
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    if cleaned and cleaned[-1] in "KMGT":
        scale = 1024 ** ("KMGT".index(cleaned[-1]) + 1)
        cleaned = cleaned[:-1]
    try:
        value = float(cleaned)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 4G, 512M or 0 for no budget)") from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no budget) or a positive size, got {text!r}")
    if 0 < value * scale < 256 * 2**20:
        raise argparse.ArgumentTypeError(f"{text!r} is too small for a worker (at least 256M; TensorFlow alone "
                                         "needs about 600M)")
    return int(value * scale)


def keyword(text: str) -> KeywordExpression:
    """argparse type of -k: a pytest-style expression (``safe and not wrong``), parsed once."""
    try:
        return KeywordExpression.parse(text)
    except KeywordError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def percent(text: str) -> float:
    """argparse type of compare --threshold: a positive percentage (``50`` or ``50%``) as a fraction."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive percentage, got {text!r}")
    return value / 100


# --------------------------------------------------------------------------- values read after parsing
def split(text: str | None) -> list[str] | None:
    """``a, b,c`` as ``["a", "b", "c"]``; None for no text."""
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def variants(items: list[str] | None) -> dict[str, list[str]]:
    """The --variants options (``METHOD=V1,V2``, repeatable) as method -> variants; raises UsageError."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        method, sep, names = item.partition("=")
        if not sep or not names:
            raise UsageError(f"--variants takes METHOD=V1,V2 (e.g. tape=eager,function), got {item!r}")
        out[method.strip()] = split(names) or []
    return out


# --------------------------------------------------------------------------- options
def add_case_options(parser: argparse.ArgumentParser) -> None:
    """--cases, -k, --tags and --verbose: which cases a command works on."""
    parser.add_argument("--cases", metavar="PATH", help="a case file or a folder of them (default: the repository's "
                                                        "cases/)")
    parser.add_argument("-k", metavar="EXPRESSION", type=keyword,
                        help="only cases matching a pytest-style expression: words joined with and/or/not and "
                             "parentheses, each word a substring of the case's name or of one of its tags, "
                             "ignoring case (e.g. -k 'softplus and not naive')")
    parser.add_argument("--tags", metavar="T1,T2", help="only cases with one of these tags")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up messages (silenced by default, in every worker)")


def add_measurement_options(parser: argparse.ArgumentParser) -> None:
    """--methods, --dtypes and --variants: which rows of each case are measured."""
    parser.add_argument("--methods", metavar="M1,M2", help="methods to run (default symbolic,tape,finite; also jax, "
                                                           "torch)")
    parser.add_argument("--dtypes", metavar="D1,D2", help="float32 and/or float64 (default both)")
    parser.add_argument("--variants", metavar="METHOD=V1,V2", action="append",
                        help="only these variants of a method, e.g. tape=eager,function (repeatable)")


def engine_option(text: str) -> tuple[str, str, str]:
    """argparse type of --engine-option: METHOD.NAME=VALUE."""
    head, eq, value = text.partition("=")
    method, dot, name = head.partition(".")
    if not (eq and dot and method and name and value):
        raise argparse.ArgumentTypeError(f"expected METHOD.NAME=VALUE (e.g. finite.evaluation=jax.vmap), got {text!r}")
    return method.strip(), name.strip(), value.strip()


def engine_options(items: list[tuple[str, str, str]] | None) -> dict[str, dict[str, str]]:
    """The --engine-option values as method -> {name: value}."""
    out: dict[str, dict[str, str]] = {}
    for method, name, value in items or []:
        out.setdefault(method, {})[name] = value
    return out


def add_engine_option(parser: argparse.ArgumentParser) -> None:
    """--engine-option: a setting an engine declares (``EngineInfo.options``)."""
    parser.add_argument("--engine-option", type=engine_option, action="append", metavar="METHOD.NAME=VALUE",
                        help="an option an engine declares, e.g. finite.evaluation=jax.vmap (finite differences "
                             "evaluate each round's stencil points in one jax.vmap call where the case runs under "
                             "jax.numpy and agrees with NumPy within 4 ulps; default numpy, one call per point); "
                             "repeatable")


def add_timeout_option(parser: argparse.ArgumentParser) -> None:
    """--timeout: the time budget per measurement, enforced from outside the worker."""
    parser.add_argument("--timeout", type=timeout, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="time budget per measurement; past it the worker is stopped and the row is a timeout "
                             f"(default {DEFAULT_TIMEOUT_S:g}; 0 means no limit)")


def add_jobs_option(parser: argparse.ArgumentParser) -> None:
    """--jobs: how many worker processes measure."""
    parser.add_argument("--jobs", type=jobs, default=2, metavar="N",
                        help="worker processes (default 2; use 1 for the least timing interference)")
    parser.add_argument("--memory", type=memory, default=None, metavar="SIZE",
                        help="memory budget of each worker, e.g. 4G (default: the workers together get 80%% of the "
                             "memory available at the start, each at least 2G; 0: no budget). A measurement past it "
                             "is an error row with cause memory, and the rest run on")
