"""``-k`` expressions, as pytest reads them: ``safe and not wrong``, ``(softplus or logsumexp) and not naive``.

Grammar (pytest's, without its ``name(...)`` keyword arguments)::

    expression := or_expr? EOF
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | word

A word is any run of characters other than white space and parentheses. It matches a case
when it is a substring of the case's name or of one of its tags, ignoring case (as pytest's
``-k`` matches test names and markers). A plain word without operators therefore selects
what it always did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from .errors import KeywordError

_TOKEN = re.compile(r"\s*(?:(\()|(\))|([^\s()]+))")
_OPERATORS = ("and", "or", "not")


@dataclass(frozen=True)
class KeywordExpression:
    """A parsed ``-k`` expression; ``matches(name, tags)`` evaluates it for one case."""

    text: str
    _evaluate: Callable[[Callable[[str], bool]], bool]

    @classmethod
    def parse(cls, text: str) -> "KeywordExpression":
        """Parse ``text``; raises KeywordError (a ValueError) for an empty word list, an unbalanced parenthesis,
        a dangling operator or a word where an operator belongs."""
        tokens = _tokenize(text)
        parser = _Parser(tokens, text)
        if not tokens:
            return cls(text, lambda match: True)
        evaluate = parser.or_expr()
        if parser.position < len(tokens):
            raise parser.error("expected 'and', 'or' or the end")
        return cls(text, evaluate)

    def matches(self, name: str, tags: Iterable[str] = ()) -> bool:
        """Whether a case named ``name`` with ``tags`` is selected."""
        haystacks = [name.lower(), *(tag.lower() for tag in tags)]
        return self._evaluate(lambda word: any(word.lower() in hay for hay in haystacks))

    def __str__(self) -> str:
        return self.text


def _tokenize(text: str) -> list[tuple[str, int]]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # only trailing white space is left
            break
        value = match.group(1) or match.group(2) or match.group(3)
        tokens.append((value, match.start(match.lastindex or 0)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over the tokens; each rule returns a function of the word matcher."""

    def __init__(self, tokens: list[tuple[str, int]], text: str) -> None:
        self.tokens, self.text, self.position = tokens, text, 0

    def error(self, expected: str) -> KeywordError:
        if self.position < len(self.tokens):
            value, column = self.tokens[self.position]
            return KeywordError(f"-k {self.text!r}: at column {column + 1} ({value!r}): {expected}")
        return KeywordError(f"-k {self.text!r}: at the end: {expected}")

    def peek(self) -> str | None:
        return self.tokens[self.position][0] if self.position < len(self.tokens) else None

    def take(self) -> str:
        value = self.tokens[self.position][0]
        self.position += 1
        return value

    def or_expr(self) -> Callable[[Callable[[str], bool]], bool]:
        parts = [self.and_expr()]
        while self.peek() == "or":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda match: any(p(match) for p in parts))

    def and_expr(self) -> Callable[[Callable[[str], bool]], bool]:
        parts = [self.not_expr()]
        while self.peek() == "and":
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else (lambda match: all(p(match) for p in parts))

    def not_expr(self) -> Callable[[Callable[[str], bool]], bool]:
        token = self.peek()
        if token == "not":
            self.take()
            inner = self.not_expr()
            return lambda match: not inner(match)
        if token == "(":
            self.take()
            inner = self.or_expr()
            if self.peek() != ")":
                raise self.error("expected ')'")
            self.take()
            return inner
        if token is None or token == ")" or token in _OPERATORS:
            raise self.error("expected a word, 'not' or '('")
        word = self.take()
        return lambda match: match(word)
