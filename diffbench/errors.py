"""Every error diffbench raises on purpose, in one hierarchy under :class:`DiffbenchError`.

Library code raises these and never prints or exits; the command line turns a
``DiffbenchError`` into a one-line ``diffbench: ...`` message and an exit status. Some
classes keep a second built-in base because callers rely on it: ``CaseError`` and
``KeywordError`` are ``ValueError``s, ``FolderLocked`` a ``RuntimeError``, and
``UnsupportedFunction`` an ``AttributeError`` (so ``getattr(xp, name, default)`` still works).
This module imports nothing of diffbench: every other module may import it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DiffbenchError", "UsageError", "CaseError", "KeywordError", "UnsupportedFunction", "Skip",
           "NoGradient", "ReferenceUnavailable", "UnitTimeout", "FolderLocked", "BaselineError", "CaseFailure",
           "OverBudget", "BudgetFallback"]


class DiffbenchError(Exception):
    """Base class of every error diffbench raises on purpose; the message says what happened and what to do."""


class UsageError(DiffbenchError):
    """The options or inputs given to a command cannot be used (an unknown case, a malformed size list, case
    files that do not load); the message names the option or input and what to change."""


class CaseError(DiffbenchError, ValueError):
    """A case cannot be evaluated as written; the message names the case and the fix."""


class KeywordError(DiffbenchError, ValueError):
    """A ``-k`` expression that cannot be parsed; the message names the position and what was expected."""


class UnsupportedFunction(DiffbenchError, AttributeError):
    """A case called ``xp.NAME`` and the namespace has no such function."""


class Skip(DiffbenchError):
    """This method/variant does not apply to the case; the message says why (status ``skipped``)."""


class OverBudget(Skip):
    """A :class:`Skip` because the case's predicted cost exceeds a variant's budget (not because the method
    cannot apply): another variant of the same method, declared in ``EngineInfo.budget_fallback``, may do it."""


class BudgetFallback(UserWarning):
    """``gradient``/``hessian`` with a plain method name used the method's fallback variant, because its default
    variant's budget refused the case; the message says which and why."""


class NoGradient(DiffbenchError):
    """TensorFlow returned ``None`` for some inputs (status ``none``); ``inputs`` names them."""

    def __init__(self, message: str, inputs: list[str], partial: dict[str, Any]):
        super().__init__(message)
        self.inputs = inputs
        self.partial = partial


class ReferenceUnavailable(DiffbenchError):
    """No reference could be computed; the message says why."""


class UnitTimeout(DiffbenchError):
    """One measurement ran past its time budget."""


class FolderLocked(DiffbenchError, RuntimeError):
    """Another live run holds the out folder; the message names its pid."""


class BaselineError(DiffbenchError):
    """The baseline cannot be used (missing, unreadable, malformed, unknown schema, stale)."""


class CaseFailure(DiffbenchError):
    """A case's row did not have the status the case expects (raised by the pytest plugin's items)."""
