"""Filter predicates: a small grammar over an attribute table, compiled to parameterised SQL.

A predicate selects the ids a filtered search may return (``workbench.index.metadata`` evaluates it in
DuckDB). Anything outside the grammar is rejected; values become SQL parameters and columns are checked
against the table, so no text reaches SQL unparsed.

Grammar::

    expr       := term ("OR" term)*
    term       := factor ("AND" factor)*
    factor     := "NOT" factor | "(" expr ")" | comparison
    comparison := column op literal
                | column ["NOT"] "IN" "(" literal ("," literal)* ")"
                | column ["NOT"] "BETWEEN" literal "AND" literal
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    literal    := number | 'text' (a quote inside text is written '')

Keywords are case-insensitive; column names are identifiers (letters, digits, ``_``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from workbench.errors import PredicateError

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN"}
_NUMERIC_TYPES = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|"
                            r"UBIGINT|FLOAT|REAL|DOUBLE|DECIMAL.*)$")


@dataclass(frozen=True)
class _Token:
    kind: str  # num | str | op | punct | word | kw | end
    text: str
    pos: int


def _tokenize(predicate: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(predicate):
        if predicate[pos:].strip() == "":
            break
        m = _TOKEN.match(predicate, pos)
        if m is None or m.end() == pos:
            raise PredicateError(f"predicate {predicate!r}: unexpected character at position {pos}: "
                                 f"{predicate[pos:pos + 10]!r}")
        kind = m.lastgroup or ""
        text, start = m.group(kind), m.start(kind)
        if kind == "word" and text.upper() in _KEYWORDS:
            kind, text = "kw", text.upper()
        tokens.append(_Token(kind, text, start))
        pos = m.end()
    tokens.append(_Token("end", "", len(predicate)))
    return tokens


class _Parser:
    """Recursive descent over the grammar in the module docstring; builds SQL and its parameters."""

    def __init__(self, predicate: str, columns: Mapping[str, str]) -> None:
        self.predicate = predicate
        self.columns = columns
        self.tokens = _tokenize(predicate)
        self.i = 0
        self.params: list[Any] = []

    def fail(self, message: str) -> PredicateError:
        tok = self.tokens[self.i]
        where = f"at position {tok.pos} ({tok.text!r})" if tok.kind != "end" else "at the end"
        return PredicateError(f"predicate {self.predicate!r}: {message} {where}")

    def peek(self, kind: str, text: str | None = None) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == kind and (text is None or tok.text == text)

    def take(self, kind: str, text: str | None = None) -> _Token:
        if not self.peek(kind, text):
            raise self.fail(f"expected {text or kind}")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> str:
        if self.peek("end"):
            raise PredicateError("predicate is empty")
        sql = self.expr()
        if not self.peek("end"):
            raise self.fail("unexpected token")
        return sql

    def expr(self) -> str:
        parts = [self.term()]
        while self.peek("kw", "OR"):
            self.i += 1
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def term(self) -> str:
        parts = [self.factor()]
        while self.peek("kw", "AND"):
            self.i += 1
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def factor(self) -> str:
        if self.peek("kw", "NOT"):
            self.i += 1
            return f"(NOT {self.factor()})"
        if self.peek("punct", "("):
            self.i += 1
            sql = self.expr()
            self.take("punct", ")")
            return sql
        return self.comparison()

    def comparison(self) -> str:
        if not self.peek("word"):
            raise self.fail("expected a column name")
        tok = self.take("word")
        name = tok.text
        if name not in self.columns:
            raise PredicateError(f"predicate {self.predicate!r}: unknown column {name!r} at position "
                                 f"{tok.pos}; columns: {', '.join(self.columns)}")
        col = f'"{name}"'
        negate = ""
        if self.peek("kw", "NOT"):
            self.i += 1
            negate = "NOT "
            if not (self.peek("kw", "IN") or self.peek("kw", "BETWEEN")):
                raise self.fail("expected IN or BETWEEN after NOT")
        if self.peek("kw", "IN"):
            self.i += 1
            self.take("punct", "(")
            marks = [self.literal(name)]
            while self.peek("punct", ","):
                self.i += 1
                marks.append(self.literal(name))
            self.take("punct", ")")
            return f"({col} {negate}IN ({', '.join(marks)}))"
        if self.peek("kw", "BETWEEN"):
            self.i += 1
            low = self.literal(name)
            self.take("kw", "AND")
            high = self.literal(name)
            return f"({col} {negate}BETWEEN {low} AND {high})"
        if not self.peek("op"):
            raise self.fail(f"expected a comparison operator after column {name!r}")
        op = self.take("op").text
        return f"({col} {'<>' if op == '!=' else op} {self.literal(name)})"

    def literal(self, column: str) -> str:
        numeric = bool(_NUMERIC_TYPES.match(self.columns[column].upper()))
        tok = self.tokens[self.i]
        if tok.kind == "num":
            if not numeric:
                raise self.fail(f"column {column!r} is {self.columns[column]}, got a number")
            value: Any = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
        elif tok.kind == "str":
            if numeric:
                raise self.fail(f"column {column!r} is {self.columns[column]}, got text")
            value = tok.text[1:-1].replace("''", "'")
        else:
            raise self.fail(f"expected a value for column {column!r}")
        self.i += 1
        self.params.append(value)
        return "?"


def compile_predicate(predicate: str, columns: Mapping[str, str]) -> tuple[str, list[Any]]:
    """Parse ``predicate`` (grammar in the module docstring) against ``columns`` (name -> DuckDB type).

    Returns the SQL ``WHERE`` fragment with ``?`` placeholders and the parameter values.
    """
    parser = _Parser(predicate, columns)
    return parser.parse(), parser.params
