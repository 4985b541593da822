"""The filter language without a database: the grammar, error messages with their caret,
what a filter names, and the SQL it compiles to (values always bound parameters)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from edgeloop.catalog.filter import FilterError, compile_filter, parse_filter, select_items
from edgeloop.errors import ConfigError

SEED_EXAMPLES = [
    "dataset like '%AMS Activity Study%'",
    "bucket_name = 'edge-impulse-health-reference-design' AND --labels sitting,walking",
    "metadata->ei_check = 0",
    "created > DATE('2022-08-01')",
    "file_name LIKE '%.png'",
    "file_names CONTAINS 'x' AND not file_names CONTAINS 'y'",
    "dataset = 'Transform tutorial'",
    "dataset = 'AMS sorted' AND file_names CONTAINS 'ppg.csv'",
]


@pytest.mark.parametrize("query", SEED_EXAMPLES)
def test_seed_examples_compile_on_both_dialects(query: str) -> None:
    flt = compile_filter(query)
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        assert "WHERE" in str(select_items(flt).compile(dialect=dialect))


@pytest.mark.parametrize(
    ("query", "fields", "selects_files"),
    [
        ("dataset like '%x%'", {"dataset"}, False),
        ("bucket_name = 'b' AND --labels a,b", {"bucket_name", "--labels"}, False),
        ("metadata->ei_check = 0 OR name = 'x'", {"metadata", "name"}, False),
        ("file_name LIKE '%.png'", {"file_name"}, True),
        ("file_names CONTAINS 'x'", {"file_names"}, False),
        ("NOT (id = 1 OR created < DATE('2020-01-01'))", {"id", "created"}, False),
        ("DATASET = 'x' AND FILE_NAME = 'y'", {"dataset", "file_name"}, True),
    ],
)
def test_fields_named(query: str, fields: set[str], selects_files: bool) -> None:
    flt = compile_filter(query)
    assert flt.fields == fields
    assert flt.selects_files is selects_files


def test_keywords_are_case_insensitive_and_not_fields() -> None:
    a = parse_filter("name like 'x' and not id in (1) or file_names contains 'y'")
    b = parse_filter("NAME LIKE 'x' AND NOT id IN (1) OR file_names CONTAINS 'y'")
    assert [t.type for t in a.scan_values(lambda _: True)] == [
        t.type for t in b.scan_values(lambda _: True)
    ]
    # keywords are still metadata keys and labels where those are expected
    assert compile_filter("metadata->date = 'x' AND metadata->in = 'y'").fields == {"metadata"}
    labels = parse_filter("--labels not, and")
    assert [str(t) for t in labels.children[1:]] == ["not", "and"]


# (filter, message, caret column (0-based offset into the filter))
ERRORS = [
    (
        "name = 'x' OR 1=1 --",
        "unexpected '1' (expected '(', --labels, NOT, a field, got '1')",
        14,
    ),
    ("name = ''; DROP TABLE items; --'", "unexpected ';' (expected AND, OR,", 9),
    ("nme = 'x'", "unknown field 'nme' (expected one of dataset, bucket_id,", 0),
    ("name = 'x' AND foo > 3", "unknown field 'foo'", 15),
    ("name = 'abc", "unterminated string", 7),
    ('name = "abc"', "strings are single-quoted", 7),
    ("name = 'x' & id = 1", "unexpected '&' (expected AND, OR, the end of the filter", 11),
    ("name = 'x' AND AND id = 1", "unexpected 'AND' (expected '(', --labels, NOT, a field", 15),
    ("(name = 'x'", "the filter ends too early (expected ')'", 11),
    ("name = 'x'   ", "", -1),  # trailing blanks are fine
    ("name", "the filter ends too early", 4),
    ("--labels a,", "the filter ends too early (expected a label, a quoted string", 11),
    ("", "empty filter", 0),
    ("name IN ()", "unexpected ')'", 9),
    ("name LIKE 5", "unexpected '5' (expected a quoted string", 10),
    ("id LIKE '1'", "LIKE compares text, id is not text", 3),
    ("id = '1'", "id compares with a number", 5),
    ("total_file_size IN (1, 'x')", "total_file_size compares with a number", 23),
    ("name = 1", "name compares with a quoted string", 7),
    ("created > 5", "created compares with a date", 10),
    ("created > DATE('2022-13-01')", "invalid date (expected DATE('YYYY-MM-DD')", 15),
    ("created > DATE('22-1-1')", "invalid date", 15),
    ("created IN (DATE('2022-01-01'), 'soon')", "invalid time", 32),
    ("name > DATE('2022-01-01')", "only created compares with a DATE, not name", 7),
    ("metadata = 'x'", "metadata needs a key", 0),
    ("name->x = 'a'", "only metadata has keys", 0),
    ("metadata->'a\"b' = 'x'", "invalid metadata key", 10),
    ("metadata->'' = 'x'", "invalid metadata key", 10),
    ("file_names = 'x'", "file_names is only used with CONTAINS", 0),
    ("file_names LIKE 'x'", "file_names is only used with CONTAINS", 0),
    ("name CONTAINS 'x'", "CONTAINS is only for file_names, not name", 5),
    ("file_names CONTAINS 3", "file_names compares with a quoted string", 20),
    ("bucket_id = 3", "bucket_id is the bucket's name (edgeloop keeps no numeric bucket ids)", 12),
]


@pytest.mark.parametrize(("query", "message", "column"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_show_a_caret_under_the_position(query: str, message: str, column: int) -> None:
    if column < 0:
        compile_filter(query)
        return
    with pytest.raises(FilterError) as info:
        compile_filter(query)
    exc = info.value
    assert isinstance(exc, ConfigError)
    first, line, caret = str(exc).split("\n")
    assert first.startswith("filter: " + message), first
    assert line == "    " + query
    assert caret == "    " + " " * column + "^"
    assert exc.position == column and exc.query == query and exc.path == "filter"


def test_error_on_a_later_line_names_line_and_column_and_the_file() -> None:
    query = "dataset = 'AMS sorted'\n  AND nme = 'y'"
    with pytest.raises(FilterError) as info:
        compile_filter(query, file="pipeline.json", path="steps[1].filter")
    exc = info.value
    assert (exc.line, exc.column, exc.file, exc.path) == (2, 7, "pipeline.json", "steps[1].filter")
    assert str(exc).split("\n") == [
        "pipeline.json: steps[1].filter: unknown field 'nme' (expected one of dataset, "
        "bucket_id, bucket_name, bucket_path, id, name, total_file_count, total_file_size, "
        "created, metadata->KEY, file_name, file_names, got 'nme') (line 2, column 7)",
        "      AND nme = 'y'",
        "          ^",
    ]


@pytest.mark.parametrize(
    ("query", "secret"),
    [
        ("name = 'x'' OR ''1''=''1'", "x' OR '1'='1"),
        ("metadata->'k''); DROP TABLE items; --' = 'v'", "DROP TABLE items"),
        ("--labels 'a''; DELETE FROM items'", "DELETE FROM items"),
        ("file_names CONTAINS 'x'') OR 1=1 --'", "OR 1=1"),
        ("dataset LIKE '%''; DROP TABLE datasets; --'", "DROP TABLE datasets"),
    ],
)
def test_values_are_bound_parameters(query: str, secret: str) -> None:
    flt = compile_filter(query)
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = select_items(flt).compile(dialect=dialect)
        assert secret not in str(compiled)
        assert any(secret in str(v) for v in compiled.params.values()), compiled.params


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abnmeid_-'\"()=<>!%,; 01.>\n")), max_size=40))
def test_any_text_compiles_or_raises_a_filter_error(text: str) -> None:
    try:
        compile_filter(text)
    except FilterError as exc:
        assert exc.query == text and 0 <= exc.position <= len(text)
        assert "^" in str(exc).splitlines()[-1]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "name = 'a'",
                "id >= 2",
                "metadata->k != 1",
                "--labels a,'b c'",
                "file_name NOT LIKE '%.png'",
                "file_names CONTAINS 'x'",
                "created <= DATE('2022-08-01')",
                "bucket_name IN ('a', 'b')",
                "total_file_size < 10",
            ]
        ),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.sampled_from([" AND ", " OR ", " AND NOT ", " or not "]), min_size=4, max_size=4),
)
def test_combinations_compile(conditions: list[str], joins: list[str]) -> None:
    text = conditions[0]
    for cond, join in zip(conditions[1:], joins, strict=False):
        text = f"({text}){join}{cond}"
    flt = compile_filter(text)
    str(select_items(flt).compile(dialect=postgresql.dialect()))
    str(select_items(flt).compile(dialect=sqlite.dialect()))
