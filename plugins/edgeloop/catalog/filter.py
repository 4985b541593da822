"""The catalog's filter language (seed 001, "query language"), compiled to SQLAlchemy.

A filter selects items, and optionally files of items::

    dataset like '%AMS Activity Study%'
    bucket_name = 'edge-impulse-health-reference-design' AND --labels sitting,walking
    metadata->ei_check = 0
    created > DATE('2022-08-01')
    file_name LIKE '%.png'
    file_names CONTAINS 'ppg.csv' AND NOT file_names CONTAINS 'polar_h10.csv'

The text is parsed by a lark LALR grammar and compiled to a SQLAlchemy boolean expression
over ``items``, ``datasets`` and ``files``; every value of the filter is a bound parameter,
never SQL text. Keywords and field names are case-insensitive; metadata keys, values and
labels are not.

Fields, mapped onto the catalog:

================  =================================================================
dataset           the item's dataset name (``datasets.name``)
bucket_name       the bucket of the item's source: ``items.source`` is the source URI
                  (``s3://BUCKET/prefix/``); an item whose source is not a URI has none
bucket_id         the same as bucket_name: edgeloop keeps no numeric bucket ids, a bucket
                  is known by its name
bucket_path       the item's key within the bucket (``items.source_key``)
id                the item's id (``items.id``)
name              the item's name
total_file_count  the number of the item's files
total_file_size   the total size in bytes of the item's files
created           when the item was created (``items.created_at``, UTC)
metadata->KEY     the item's metadata value KEY (``metadata->'a key'`` for other keys)
file_name         the name of one file of the item (see below)
file_names        all file names of the item, only with CONTAINS: the item has a file of
                  exactly that name
--labels a,b      the item's label is one of a, b (an item has one label: ``--labels
                  sitting,walking`` returns the items labeled sitting and those labeled
                  walking); a label with spaces or commas is quoted: ``--labels 'a b'``
================  =================================================================

Operators and values:

- ``=``, ``!=`` (or ``<>``), ``<``, ``<=``, ``>``, ``>=``; ``LIKE`` / ``NOT LIKE`` (``%``
  and ``_`` wildcards, ``\\`` escapes them, case-insensitive for ASCII letters on SQLite
  and PostgreSQL alike); ``IN (v, ...)`` / ``NOT IN (...)``; ``CONTAINS``; ``AND``, ``OR``,
  ``NOT`` (AND binds tighter than OR) and parentheses.
- Strings are single-quoted, a quote inside doubled (``'it''s'``). Text is compared
  byte-wise (the same order on both databases).
- ``metadata->KEY`` compares as text with a string (``metadata->ei_check = '0'``) and as a
  number with a number (``metadata->ei_check = 0`` matches ``"0"`` and ``0``;
  ``metadata->age > 10`` is numeric); a value that is not a number matches no numeric
  comparison.
- ``created`` takes ``DATE('YYYY-MM-DD')``, a UTC calendar day: ``= DATE(d)`` is created on
  that day, ``> DATE(d)`` after that day, ``<= DATE(d)`` on or before it; or a quoted
  ISO-8601 time (``created > '2022-08-01T10:30:00Z'``, UTC unless it has an offset), an
  instant.
- A missing value (a metadata key the item lacks, an item with no bucket) matches no
  comparison, not even ``!=``, ``NOT LIKE`` or ``NOT IN``; ``NOT`` is the complement:
  ``NOT f`` selects exactly the items (files) that ``f`` leaves out.

Files: a filter is evaluated per file of an item. An item is returned when one of its files
(or the item itself, for a filter that names no file_name) matches, and it is returned with
the files that match: a filter that names ``file_name`` returns items with only the
matching files (an item without files never matches it); any other filter returns items with
all their files. ``total_file_count`` and ``total_file_size`` always count all the item's
files.

Deleted items are left out unless asked for (``include_deleted``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from edgeloop.catalog.tables import datasets, files, items
from edgeloop.errors import ConfigError

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr (OR and_expr)*
?and_expr: not_expr (AND not_expr)*
?not_expr: NOT not_expr -> negation
         | atom
?atom: "(" or_expr ")"
     | comparison
     | labels

?comparison: field COMPARE value                      -> compare
           | field NOT? LIKE STRING                   -> like
           | field NOT? IN "(" value ("," value)* ")" -> in_list
           | field CONTAINS value                     -> contains

labels: LABELS label ("," label)*
?label: LABEL | STRING

field: NAME (ARROW key)?
?key: KEY | STRING

?value: STRING | NUMBER | date
date: DATE "(" STRING ")"

OR.2: /or\b/i
AND.2: /and\b/i
NOT.2: /not\b/i
LIKE.2: /like\b/i
IN.2: /in\b/i
CONTAINS.2: /contains\b/i
DATE.2: /date\b/i
LABELS.2: /--labels\b/i
COMPARE: "!=" | "<>" | "<=" | ">=" | "=" | "<" | ">"
ARROW: "->"
NAME: /(?!(?i:or|and|not|like|in|contains|date)\b)[A-Za-z_][A-Za-z0-9_]*/
KEY: /[A-Za-z0-9_][A-Za-z0-9_.\-]*/
LABEL: /[^\s,()'"]+/
STRING: /'(?:[^']|'')*'/
NUMBER: /[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/

%ignore /\s+/
"""

# What the parser's terminals are called in an error message.
_TERMINAL_NAMES = {
    "NAME": "a field",
    "STRING": "a quoted string",
    "NUMBER": "a number",
    "COMPARE": "a comparison (=, !=, <, <=, >, >=)",
    "LIKE": "LIKE",
    "NOT": "NOT",
    "IN": "IN",
    "CONTAINS": "CONTAINS",
    "AND": "AND",
    "OR": "OR",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "LABELS": "--labels",
    "LABEL": "a label",
    "ARROW": "'->'",
    "KEY": "a metadata key",
    "DATE": "DATE('YYYY-MM-DD')",
    "$END": "the end of the filter",
}

TEXT_FIELDS = ("dataset", "bucket_id", "bucket_name", "bucket_path", "name", "file_name")
NUMBER_FIELDS = ("id", "total_file_count", "total_file_size")
FIELDS = (
    "dataset",
    "bucket_id",
    "bucket_name",
    "bucket_path",
    "id",
    "name",
    "total_file_count",
    "total_file_size",
    "created",
    "metadata->KEY",
    "file_name",
    "file_names",
)

_ORDERING = {"<", "<=", ">", ">="}


class FilterError(ConfigError):
    """A filter that does not parse or names what the catalog does not have.

    The message shows the filter's line with a caret under ``position`` (0-based offset
    into ``query``).
    """

    def __init__(
        self,
        message: str,
        *,
        query: str,
        position: int,
        file: str | None = None,
        path: str | None = "filter",
        expected: str | None = None,
        value: Any = None,
    ) -> None:
        super().__init__(message, file=file, path=path, expected=expected, value=value)
        self.query = query
        self.position = max(0, min(position, len(query)))
        line_start = query.rfind("\n", 0, self.position) + 1
        line_end = query.find("\n", self.position)
        line = query[line_start : len(query) if line_end < 0 else line_end]
        self.line = query.count("\n", 0, self.position) + 1
        self.column = self.position - line_start + 1
        where = f" (line {self.line}, column {self.column})" if "\n" in query else ""
        caret = " " * (self.position - line_start) + "^"
        self.args = (f"{self.args[0]}{where}\n    {line}\n    {caret}",)


@dataclass(frozen=True)
class Filter:
    """A compiled filter: ``where`` is a boolean SQLAlchemy expression over ``items``,
    ``datasets`` and ``files`` (joined as in ``select_items``)."""

    text: str
    where: sa.ColumnElement[bool]
    fields: frozenset[str]

    @property
    def selects_files(self) -> bool:
        """The filter names file_name: it is evaluated per file and returns matching files."""
        return "file_name" in self.fields


# --- dialect-specific pieces: the same meaning on SQLite and PostgreSQL -------------------


class _JSONText(sa.JSON):
    """JSON for a CAST of a JSON text column: ``CAST(x AS JSON)`` on PostgreSQL, a no-op
    ``CAST(x AS TEXT)`` on SQLite (whose JSON functions read text; its CAST AS JSON gives 0)."""

    cache_ok = True


@compiles(_JSONText, "sqlite")
def _json_text_sqlite(type_, compiler, **kw) -> str:
    return "TEXT"


class _strpos(FunctionElement):
    """1-based position of a substring, 0 when absent (``strpos`` / SQLite ``instr``)."""

    type = sa.Integer()
    inherit_cache = True


@compiles(_strpos)
def _strpos_default(element, compiler, **kw) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


@compiles(_strpos, "sqlite")
def _strpos_sqlite(element, compiler, **kw) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


class _bytewise(FunctionElement):
    """Text compared and sorted byte-wise: ``COLLATE "C"`` on PostgreSQL (whatever the
    database's collation), SQLite's default BINARY collation elsewhere."""

    type = sa.Text()
    inherit_cache = True


@compiles(_bytewise)
def _bytewise_default(element, compiler, **kw) -> str:
    return f"({compiler.process(element.clauses, **kw)})"


@compiles(_bytewise, "postgresql")
def _bytewise_pg(element, compiler, **kw) -> str:
    return f'({compiler.process(element.clauses, **kw)}) COLLATE "C"'


# A JSON number (RFC 8259), with the whitespace JSON allows around it.
_JSON_NUMBER_RE = r"^[ \t\n\r]*-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?[ \t\n\r]*$"


class _as_number(FunctionElement):
    """The text as a float when it is a JSON number, else NULL (never a cast error)."""

    type = sa.Float()
    inherit_cache = True


@compiles(_as_number)
def _as_number_pg(element, compiler, **kw) -> str:
    (text,) = element.clauses
    expr = sa.case(
        (text.op("~")(sa.literal(_JSON_NUMBER_RE)), sa.cast(text, sa.Float)), else_=sa.null()
    )
    return compiler.process(expr, **kw)


@compiles(_as_number, "sqlite")
def _as_number_sqlite(element, compiler, **kw) -> str:
    (text,) = element.clauses
    is_number = sa.func.json_type(text).in_(["integer", "real"])
    expr = sa.case(
        (sa.func.json_valid(text) == 1, sa.case((is_number, sa.cast(text, sa.Float)))),
        else_=sa.null(),
    )
    return compiler.process(expr, **kw)


def bucket_name_expr() -> sa.ColumnElement[str]:
    """The bucket of ``items.source`` (``scheme://BUCKET/prefix``); NULL when not a URI."""
    source = items.c.source
    start = _strpos(source, "://")
    rest = sa.func.substr(source, start + 3)
    return sa.case(
        (start > 0, sa.func.substr(rest, 1, _strpos(rest + "/", "/") - 1)), else_=sa.null()
    )


def file_count_expr() -> sa.ColumnElement[int]:
    f = files.alias("count_files")
    return (
        sa.select(sa.func.count(f.c.id))
        .where(f.c.item_id == items.c.id)
        .correlate(items)
        .scalar_subquery()
    )


def file_size_expr() -> sa.ColumnElement[int]:
    f = files.alias("size_files")
    return (
        sa.select(sa.func.coalesce(sa.func.sum(f.c.size), 0))
        .where(f.c.item_id == items.c.id)
        .correlate(items)
        .scalar_subquery()
    )


def metadata_text(key: str) -> sa.ColumnElement[str]:
    """The item's metadata value ``key`` as text (NULL when absent)."""
    return sa.cast(items.c.metadata, _JSONText)[key].as_string()


# --- parsing ----------------------------------------------------------------------------


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=True)


def parse_filter(text: str, *, file: str | None = None, path: str | None = "filter") -> Tree[Token]:
    """Parse a filter; a syntax error raises FilterError with a caret under its position."""
    if not text.strip():
        raise FilterError(
            "empty filter",
            query=text,
            position=0,
            file=file,
            path=path,
            expected="a condition",
            value=text,
        )
    try:
        return _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, file, path) from None


def _accepted(exc: UnexpectedInput, text: str) -> set[str]:
    """The terminals the grammar accepts where the error is, after every reduction (more
    precise than the lexer state's set)."""
    try:
        if isinstance(exc, UnexpectedToken) and exc.interactive_parser is not None:
            return set(exc.interactive_parser.accepts())
        interactive = _parser().parse_interactive(text[: exc.pos_in_stream])
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except UnexpectedInput:  # the prefix itself does not lex: fall back on lark's own set
        return set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())


def _syntax_error(exc: UnexpectedInput, text: str, file: str | None, path: str | None):
    def expected() -> str:
        accepted = _accepted(exc, text)
        shown = sorted({_TERMINAL_NAMES.get(t, t) for t in accepted if not t.startswith("__")})
        return ", ".join(shown) if shown else "something else"

    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        char = text[pos]
        if char == "'":
            return FilterError(
                "unterminated string",
                query=text,
                position=pos,
                file=file,
                path=path,
                expected="a closing quote (a quote inside a string is doubled: 'it''s')",
                value=text[pos:],
            )
        if char == '"':
            return FilterError(
                "strings are single-quoted",
                query=text,
                position=pos,
                file=file,
                path=path,
                expected="'text'",
                value=char,
            )
        word = re.match(r"\w+", text[pos:])
        shown = word.group(0) if word else char
        return FilterError(
            f"unexpected {shown!r}",
            query=text,
            position=pos,
            file=file,
            path=path,
            expected=expected(),
            value=shown,
        )
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        tok = exc.token
        return FilterError(
            f"unexpected {str(tok)!r}",
            query=text,
            position=tok.start_pos if tok.start_pos is not None else len(text),
            file=file,
            path=path,
            expected=expected(),
            value=str(tok),
        )
    return FilterError(
        "the filter ends too early",
        query=text,
        position=len(text.rstrip()),
        file=file,
        path=path,
        expected=expected(),
        value=text,
    )


# --- compiling --------------------------------------------------------------------------


def compile_filter(text: str, *, file: str | None = None, path: str | None = "filter") -> Filter:
    """Parse and compile a filter; every user value becomes a bound parameter."""
    tree = parse_filter(text, file=file, path=path)
    compiler = _Compiler(text, file, path)
    where = compiler.expr(tree)
    return Filter(text=text, where=where, fields=frozenset(compiler.fields))


class _Compiler:
    def __init__(self, text: str, file: str | None, path: str | None) -> None:
        self.text = text
        self.file = file
        self.path = path
        self.fields: set[str] = set()

    def error(self, message: str, at: Token | Tree, expected: str | None = None, value=None):
        if isinstance(at, Tree):
            pos = at.meta.start_pos if not at.meta.empty else 0
        else:
            pos = at.start_pos or 0
        return FilterError(
            message,
            query=self.text,
            position=pos,
            file=self.file,
            path=self.path,
            expected=expected,
            value=value,
        )

    # boolean structure

    def expr(self, node: Tree) -> sa.ColumnElement[bool]:
        kind = node.data
        if kind == "or_expr":
            return sa.or_(*(self.expr(c) for c in node.children if isinstance(c, Tree)))
        if kind == "and_expr":
            return sa.and_(*(self.expr(c) for c in node.children if isinstance(c, Tree)))
        if kind == "negation":
            inner = self.expr(node.children[-1])
            # Two-valued: NOT f is true wherever f is not true (a NULL from a missing value
            # counts as not true), so NOT selects exactly what f leaves out.
            return sa.not_(sa.func.coalesce(inner, sa.false()))
        if kind == "labels":
            labels = [_token_text(t) for t in node.children[1:]]
            self.fields.add("--labels")
            return items.c.label.in_(labels)
        if kind == "compare":
            return self.compare(node)
        if kind == "like":
            return self.like(node)
        if kind == "in_list":
            return self.in_list(node)
        if kind == "contains":
            return self.contains(node)
        raise AssertionError(f"unhandled filter node {kind}")  # the grammar has no other

    # fields

    def field(self, node: Tree) -> tuple[str, Token, sa.ColumnElement | None]:
        """(kind, token, column): kind is the field's name, or 'metadata' for metadata->KEY."""
        name_tok: Token = node.children[0]
        name = str(name_tok).lower()
        if len(node.children) > 1:
            key_tok: Token = node.children[2]
            if name != "metadata":
                raise self.error(
                    f"only metadata has keys ({name}->...)",
                    name_tok,
                    expected="metadata->KEY",
                    value=str(name_tok),
                )
            key = _token_text(key_tok)
            if not key or '"' in key or "\\" in key:
                raise self.error(
                    "invalid metadata key",
                    key_tok,
                    expected='a non-empty key without " or \\',
                    value=key,
                )
            self.fields.add("metadata")
            return "metadata", name_tok, metadata_text(key)
        if name == "metadata":
            raise self.error(
                "metadata needs a key", name_tok, expected="metadata->KEY", value=str(name_tok)
            )
        column = {
            "dataset": lambda: datasets.c.name,
            "bucket_id": bucket_name_expr,
            "bucket_name": bucket_name_expr,
            "bucket_path": lambda: items.c.source_key,
            "id": lambda: items.c.id,
            "name": lambda: items.c.name,
            "total_file_count": file_count_expr,
            "total_file_size": file_size_expr,
            "created": lambda: items.c.created_at,
            "file_name": lambda: files.c.name,
            "file_names": lambda: None,
        }.get(name)
        if column is None:
            raise self.error(
                f"unknown field {str(name_tok)!r}",
                name_tok,
                expected="one of " + ", ".join(FIELDS),
                value=str(name_tok),
            )
        self.fields.add(name)
        return name, name_tok, column()

    def only_contains(self, kind: str, tok: Token) -> None:
        if kind == "file_names":
            raise self.error(
                "file_names is only used with CONTAINS",
                tok,
                expected="file_names CONTAINS 'name'",
                value=str(tok),
            )

    # values

    def text_value(self, kind: str, tok: Token) -> str:
        if not isinstance(tok, Token) or tok.type != "STRING":
            raise self.error(
                f"{kind} compares with a quoted string",
                tok,
                expected="a quoted string",
                value=_source(self.text, tok),
            )
        return _token_text(tok)

    def number_value(self, kind: str, tok: Token | Tree) -> int | float:
        if not isinstance(tok, Token) or tok.type != "NUMBER":
            raise self.error(
                f"{kind} compares with a number",
                tok,
                expected="a number",
                value=_source(self.text, tok),
            )
        return _number(str(tok))

    def created_value(self, tok: Token | Tree) -> tuple[datetime, datetime | None]:
        """(start, end): a DATE is the day [start, end); a quoted time is an instant."""
        if isinstance(tok, Tree):  # date
            arg: Token = tok.children[1]
            raw = _token_text(arg)
            try:
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
                    raise ValueError(raw)
                day = date.fromisoformat(raw)
            except ValueError:
                raise self.error(
                    "invalid date", arg, expected="DATE('YYYY-MM-DD')", value=raw
                ) from None
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start, start + timedelta(days=1)
        if tok.type == "STRING":
            raw = _token_text(tok)
            try:
                moment = datetime.fromisoformat(raw)
            except ValueError:
                raise self.error(
                    "invalid time",
                    tok,
                    expected="DATE('YYYY-MM-DD') or an ISO-8601 time like '2022-08-01T10:30:00Z'",
                    value=raw,
                ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC), None
        raise self.error(
            "created compares with a date",
            tok,
            expected="DATE('YYYY-MM-DD') or a quoted ISO-8601 time",
            value=str(tok),
        )

    def reject_date(self, kind: str, tok: Token | Tree) -> None:
        if isinstance(tok, Tree):
            raise self.error(
                f"only created compares with a DATE, not {kind}",
                tok,
                expected="created",
                value=_source(self.text, tok),
            )

    # conditions

    def compare(self, node: Tree) -> sa.ColumnElement[bool]:
        field_node, op_tok, value = node.children
        kind, tok, column = self.field(field_node)
        self.only_contains(kind, tok)
        op = "!=" if str(op_tok) == "<>" else str(op_tok)
        if kind == "created":
            start, end = self.created_value(value)
            return _compare_time(column, op, start, end)
        self.reject_date(kind, value)
        if kind in NUMBER_FIELDS:
            return _compare(column, op, self.number_value(kind, value))
        if kind == "metadata" and value.type == "NUMBER":
            return _compare(_as_number(column), op, _number(str(value)))
        if kind in ("bucket_id", "bucket_name") and value.type == "NUMBER":
            raise self.error(
                f"{kind} is the bucket's name (edgeloop keeps no numeric bucket ids)",
                value,
                expected="a quoted bucket name",
                value=str(value),
            )
        text = self.text_value(kind, value)
        if op in _ORDERING:
            return _compare(_bytewise(column), op, text)
        return _compare(column, op, text)

    def like(self, node: Tree) -> sa.ColumnElement[bool]:
        field_node, *middle, pattern_tok = node.children
        kind, tok, column = self.field(field_node)
        self.only_contains(kind, tok)
        if kind in NUMBER_FIELDS or kind == "created":
            raise self.error(
                f"LIKE compares text, {kind} is not text",
                middle[-1],
                expected="=, !=, <, <=, >, >= or IN",
                value=str(middle[-1]),
            )
        matched = column.ilike(_token_text(pattern_tok), escape="\\")
        negated = any(isinstance(t, Token) and t.type == "NOT" for t in middle)
        return sa.not_(matched) if negated else matched

    def in_list(self, node: Tree) -> sa.ColumnElement[bool]:
        field_node, *rest = node.children
        negated = any(isinstance(t, Token) and t.type == "NOT" for t in rest)
        values = [v for v in rest if not (isinstance(v, Token) and v.type in ("NOT", "IN"))]
        kind, tok, column = self.field(field_node)
        self.only_contains(kind, tok)
        if kind == "created":
            parts = [
                _compare_time(column, "=", *self.created_value(v)) for v in values
            ]  # each a day or an instant
            matched = sa.or_(*parts)
            return sa.not_(matched) if negated else matched
        for v in values:
            self.reject_date(kind, v)
        if kind in NUMBER_FIELDS:
            nums = [self.number_value(kind, v) for v in values]
            return column.not_in(nums) if negated else column.in_(nums)
        if kind == "metadata":
            texts = [_token_text(v) for v in values if v.type == "STRING"]
            nums = [_number(str(v)) for v in values if v.type == "NUMBER"]
            parts = []
            if texts:
                parts.append(column.not_in(texts) if negated else column.in_(texts))
            if nums:
                number = _as_number(column)
                parts.append(number.not_in(nums) if negated else number.in_(nums))
            return sa.and_(*parts) if negated else sa.or_(*parts)
        texts = [self.text_value(kind, v) for v in values]
        return column.not_in(texts) if negated else column.in_(texts)

    def contains(self, node: Tree) -> sa.ColumnElement[bool]:
        field_node, op_tok, value = node.children
        kind, _tok, _column = self.field(field_node)
        if kind != "file_names":
            raise self.error(
                f"CONTAINS is only for file_names, not {kind}",
                op_tok,
                expected="file_names CONTAINS 'name' (or LIKE for a substring)",
                value=str(op_tok),
            )
        self.reject_date(kind, value)
        name = self.text_value(kind, value)
        f = files.alias("named_files")
        return sa.exists().where(f.c.item_id == items.c.id, f.c.name == name)


def _token_text(tok: Token) -> str:
    """A STRING token's value (quotes removed, doubled quotes undone) or the token's text."""
    raw = str(tok)
    if tok.type == "STRING":
        return raw[1:-1].replace("''", "'")
    return raw


def _source(text: str, node: Token | Tree) -> str:
    if isinstance(node, Token):
        return str(node)
    if node.meta.empty:
        return ""
    return text[node.meta.start_pos : node.meta.end_pos]


def _number(raw: str) -> int | float:
    return int(raw) if re.fullmatch(r"[+-]?\d+", raw) else float(raw)


def _compare(column: sa.ColumnElement, op: str, value: Any) -> sa.ColumnElement[bool]:
    return {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }[op](value)


def _compare_time(
    column: sa.ColumnElement, op: str, start: datetime, end: datetime | None
) -> sa.ColumnElement[bool]:
    if end is None:  # an instant
        return _compare(column, op, start)
    # A calendar day [start, end).
    return {
        "=": sa.and_(column >= start, column < end),
        "!=": sa.or_(column < start, column >= end),
        "<": column < start,
        "<=": column < end,
        ">": column >= end,
        ">=": column >= start,
    }[op]


# --- running ----------------------------------------------------------------------------


def select_items(
    flt: Filter | None = None, *, dataset: str | None = None, include_deleted: bool = False
) -> sa.Select:
    """One row per (item, matching file) — an item without files has one row with NULL file
    columns — ordered by dataset, item name, item id and file name."""
    selects_files = flt is not None and flt.selects_files
    joined = items.join(datasets, datasets.c.id == items.c.dataset_id).join(
        files, files.c.item_id == items.c.id, isouter=not selects_files
    )
    query = (
        sa.select(
            *items.c,
            datasets.c.name.label("dataset"),
            bucket_name_expr().label("bucket_name"),
            items.c.source_key.label("bucket_path"),
            file_count_expr().label("total_file_count"),
            file_size_expr().label("total_file_size"),
            files.c.id.label("file_id"),
            files.c.name.label("file_name"),
            files.c.sha256.label("file_sha256"),
            files.c.size.label("file_size"),
            files.c.blob_path.label("file_blob_path"),
        )
        .select_from(joined)
        .order_by(
            _bytewise(datasets.c.name), _bytewise(items.c.name), items.c.id, _bytewise(files.c.name)
        )
    )
    if flt is not None:
        query = query.where(flt.where)
    if dataset is not None:
        query = query.where(datasets.c.name == dataset)
    if not include_deleted:
        query = query.where(items.c.deleted_at.is_(None))
    return query


def find_items(
    bind: sa.Engine | sa.Connection,
    flt: str | Filter | None = None,
    *,
    dataset: str | None = None,
    include_deleted: bool = False,
) -> list[dict[str, Any]]:
    """The items a filter selects (all items of ``dataset`` without one), each a dict of the
    item's columns (``metadata`` decoded) plus ``dataset``, ``bucket_name``, ``bucket_path``,
    ``total_file_count``, ``total_file_size`` and ``files`` (the matching files: name,
    sha256, size, blob_path). ``bind`` is an engine, or a connection to read inside its
    transaction."""
    if isinstance(flt, str):
        flt = compile_filter(flt)
    query = select_items(flt, dataset=dataset, include_deleted=include_deleted)
    if isinstance(bind, sa.Connection):
        return _collect(bind.execute(query))
    with bind.connect() as conn:
        return _collect(conn.execute(query))


def _collect(result: sa.Result) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    by_id: dict[int, dict[str, Any]] = {}
    for row in result:
        m = row._mapping
        item = by_id.get(m["id"])
        if item is None:
            item = {c.name: m[c.name] for c in items.c}
            item["metadata"] = json.loads(item["metadata"] or "{}")
            for key in ("dataset", "bucket_name", "bucket_path"):
                item[key] = m[key]
            item["total_file_count"] = int(m["total_file_count"])
            item["total_file_size"] = int(m["total_file_size"])
            item["files"] = []
            by_id[m["id"]] = item
            out.append(item)
        if m["file_id"] is not None:
            item["files"].append(
                {
                    "name": m["file_name"],
                    "sha256": m["file_sha256"],
                    "size": m["file_size"],
                    "blob_path": m["file_blob_path"],
                }
            )
    return out
