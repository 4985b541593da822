"""The filter language on a known catalog, on SQLite and on PostgreSQL (a fresh database
migrated by ``upgrade``; skipped when no server listens on 127.0.0.1:5432): every example
of the seed, every operator, injection attempts, and the `edgeloop items` command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from edgeloop.catalog.filter import compile_filter, find_items, select_items
from edgeloop.catalog.store import engine_for, upgrade
from edgeloop.catalog.tables import datasets, files, items
from edgeloop.cli import main
from edgeloop.errors import ConfigError
from edgeloop.settings import get_settings

BUCKET = "edge-impulse-health-reference-design"


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


DATASETS = {1: "AMS sorted", 2: "AMS Activity Study", 3: "Transform tutorial"}

# id: (dataset id, name, label, source, source_key, metadata, created, deleted, files)
ITEMS = {
    1: (
        1,
        "AMS_001",
        "sitting",
        f"s3://{BUCKET}/sorted/",
        "sorted/AMS_001",
        {"ei_check": "1", "age": "34", "subject": "AMS_001"},
        ts(2022, 7, 15, 10),
        None,
        {"ppg.csv": 100, "accelerometer.csv": 200, "polar_h10.csv": 50, "labels.csv": 10},
    ),
    2: (
        1,
        "AMS_002",
        "walking",
        f"s3://{BUCKET}/sorted/",
        "sorted/AMS_002",
        {"ei_check": "0", "age": "9"},
        ts(2022, 8, 1, 12),
        None,
        {"ppg.csv": 120, "accelerometer.csv": 210},
    ),
    3: (
        1,
        "AMS_003",
        "running",
        f"s3://{BUCKET}/sorted/",
        "sorted/AMS_003",
        {"ei_check": 0},  # a number, as public blocks write it
        ts(2022, 8, 2),
        None,
        {"accelerometer.csv": 5, "labels.csv": 5, "hr.png": 40},
    ),
    4: (
        1,
        "AMS_004",
        "sitting",
        f"s3://{BUCKET}/sorted/",
        "sorted/AMS_004",
        {"ei_check": "0"},
        ts(2022, 7, 1),
        ts(2022, 9, 1),  # deleted
        {"ppg.csv": 1},
    ),
    5: (
        2,
        "raw_001",
        None,
        "gs://other-bucket/lake/",
        "lake/raw_001",
        {},
        ts(2022, 6, 1),
        None,
        {"data.csv": 7},
    ),
    6: (
        2,
        "raw_002",
        "sitting",
        f"s3://{BUCKET}/portal/",
        "portal/raw_002.zip",
        {"ei_check": "1", "age": "forty"},
        ts(2023, 1, 1),
        None,
        {"plot.png": 300, "notes.txt": 1},
    ),
    7: (
        3,
        "Gestures",
        None,
        "upload",
        None,
        {"weird key": "yes", "a.b": "dot", "it's": "quoted"},
        ts(2022, 8, 1),
        None,
        {"gestures.parquet": 1000},
    ),
    8: (3, "Empty 100%", None, "block:research-combiner", None, {}, ts(2021, 3, 3), None, {}),
}

NAMES = {i: row[1] for i, row in ITEMS.items()}
LIVE = {row[1] for row in ITEMS.values() if row[7] is None}
ALL_FILES = {row[1]: sorted(row[8]) for row in ITEMS.values()}


def fill(engine: sa.Engine) -> None:
    """Write the known catalog with the tables directly."""
    with engine.begin() as conn:
        for ds_id, name in DATASETS.items():
            conn.execute(datasets.insert().values(id=ds_id, name=name, created_at=ts(2021, 1, 1)))
        for item_id, (ds, name, label, src, key, meta, created, deleted, fs) in ITEMS.items():
            conn.execute(
                items.insert().values(
                    id=item_id,
                    dataset_id=ds,
                    name=name,
                    label=label,
                    category="training" if label else None,
                    source=src,
                    source_key=key,
                    sha256=f"{item_id:064x}",
                    size=sum(fs.values()),
                    metadata=json.dumps(meta),
                    label_pending=False,
                    created_at=created,
                    updated_at=created,
                    deleted_at=deleted,
                )
            )
            for n, (file_name, size) in enumerate(sorted(fs.items())):
                conn.execute(
                    files.insert().values(
                        id=item_id * 100 + n,
                        item_id=item_id,
                        name=file_name,
                        sha256=f"{item_id * 100 + n:064x}",
                        size=size,
                        blob_path=f"blobs/{item_id}/{file_name}",
                    )
                )
    if engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
        with engine.begin() as conn:
            for table in ("datasets", "items", "files"):
                conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def catalog(
    request, tmp_path_factory: pytest.TempPathFactory, new_pg_database
) -> Iterator[sa.Engine]:
    """The known catalog in a fresh, migrated database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('filter') / 'catalog.db'}"
        upgrade(url)
        engine = engine_for(url)
        fill(engine)
        yield engine
        engine.dispose()
        return
    with new_pg_database(migrate=True) as url:
        engine = engine_for(url)
        fill(engine)
        yield engine


def names(rows: list[dict]) -> set[str]:
    return {r["name"] for r in rows}


# (filter, the items it returns): a set of names (each with all its files), or a dict of
# name -> the files returned, for filters that select files.
CASES: list[tuple[str, set[str] | dict[str, list[str]]]] = [
    # Every example of the seed (and of issue 9).
    ("dataset like '%AMS Activity Study%'", {"raw_001", "raw_002"}),
    (
        f"bucket_name = '{BUCKET}' AND --labels sitting,walking",
        {"AMS_001", "AMS_002", "raw_002"},
    ),
    ("metadata->ei_check = 0", {"AMS_002", "AMS_003"}),
    ("created > DATE('2022-08-01')", {"AMS_003", "raw_002"}),
    ("file_name LIKE '%.png'", {"AMS_003": ["hr.png"], "raw_002": ["plot.png"]}),
    (
        "file_names CONTAINS 'ppg.csv' AND not file_names CONTAINS 'polar_h10.csv'",
        {"AMS_002"},
    ),
    ("dataset = 'Transform tutorial'", {"Gestures", "Empty 100%"}),
    ("dataset = 'AMS sorted' AND file_names CONTAINS 'ppg.csv'", {"AMS_001", "AMS_002"}),
    ("metadata->ei_check = 1", {"AMS_001", "raw_002"}),
    # = != <> < <= > >= on text (byte-wise: upper case sorts before lower case)
    ("name = 'AMS_001'", {"AMS_001"}),
    ("name != 'AMS_001' AND dataset = 'AMS sorted'", {"AMS_002", "AMS_003"}),
    ("name <> 'AMS_001' AND dataset = 'AMS sorted'", {"AMS_002", "AMS_003"}),
    ("name < 'AMS_002'", {"AMS_001"}),
    ("name <= 'AMS_002'", {"AMS_001", "AMS_002"}),
    ("name > 'a'", {"raw_001", "raw_002"}),
    ("name >= 'raw_002'", {"raw_002"}),
    ("name = 'ams_001'", set()),
    # numbers
    ("id = 3", {"AMS_003"}),
    ("id != 1 AND dataset = 'AMS sorted'", {"AMS_002", "AMS_003"}),
    ("id < 3", {"AMS_001", "AMS_002"}),
    ("id <= 2", {"AMS_001", "AMS_002"}),
    ("id > 6", {"Gestures", "Empty 100%"}),
    ("id >= 7", {"Gestures", "Empty 100%"}),
    ("id IN (1, 5, 4)", {"AMS_001", "raw_001"}),
    ("id NOT IN (1, 2, 3)", {"raw_001", "raw_002", "Gestures", "Empty 100%"}),
    ("total_file_count = 0", {"Empty 100%"}),
    ("total_file_count >= 3", {"AMS_001", "AMS_003"}),
    ("total_file_size > 330", {"AMS_001", "Gestures"}),
    ("total_file_size <= 50", {"AMS_003", "raw_001", "Empty 100%"}),
    ("total_file_size = 330", {"AMS_002"}),
    ("total_file_size IN (7, 301)", {"raw_001", "raw_002"}),
    # created: DATE is a UTC day, a quoted time an instant
    ("created < DATE('2022-08-01')", {"AMS_001", "raw_001", "Empty 100%"}),
    (
        "created <= DATE('2022-08-01')",
        {"AMS_001", "AMS_002", "raw_001", "Gestures", "Empty 100%"},
    ),
    ("created = DATE('2022-08-01')", {"AMS_002", "Gestures"}),
    ("created != DATE('2022-08-01')", {"AMS_001", "AMS_003", "raw_001", "raw_002", "Empty 100%"}),
    ("created >= date('2022-08-01')", {"AMS_002", "AMS_003", "raw_002", "Gestures"}),
    ("created > '2022-08-01T06:00:00'", {"AMS_002", "AMS_003", "raw_002"}),
    (
        "created <= '2022-08-01T14:00:00+02:00'",
        {"AMS_001", "AMS_002", "raw_001", "Gestures", "Empty 100%"},
    ),
    ("created IN (DATE('2022-08-02'), DATE('2023-01-01'))", {"AMS_003", "raw_002"}),
    # LIKE / NOT LIKE (case-insensitive, \ escapes % and _)
    ("name LIKE 'ams%'", {"AMS_001", "AMS_002", "AMS_003"}),
    ("name NOT LIKE 'AMS%'", {"raw_001", "raw_002", "Gestures", "Empty 100%"}),
    ("name LIKE '%\\%'", {"Empty 100%"}),
    ("name LIKE '%0%'", {"AMS_001", "AMS_002", "AMS_003", "raw_001", "raw_002", "Empty 100%"}),
    ("name LIKE 'raw_00_'", {"raw_001", "raw_002"}),
    ("name LIKE 'AMS\\_00%'", {"AMS_001", "AMS_002", "AMS_003"}),
    ("bucket_path LIKE 'sorted/%'", {"AMS_001", "AMS_002", "AMS_003"}),
    # IN / NOT IN
    ("name IN ('AMS_001', 'raw_001', 'nope')", {"AMS_001", "raw_001"}),
    (
        "name NOT IN ('AMS_001', 'raw_001')",
        {"AMS_002", "AMS_003", "raw_002", "Gestures", "Empty 100%"},
    ),
    (
        "dataset IN ('AMS Activity Study', 'Transform tutorial')",
        {"raw_001", "raw_002", "Gestures", "Empty 100%"},
    ),
    # buckets: from items.source; bucket_id is the bucket's name
    ("bucket_name = 'other-bucket'", {"raw_001"}),
    ("bucket_id = 'other-bucket'", {"raw_001"}),
    ("bucket_name LIKE '%'", {"AMS_001", "AMS_002", "AMS_003", "raw_001", "raw_002"}),
    ("bucket_name != 'other-bucket'", {"AMS_001", "AMS_002", "AMS_003", "raw_002"}),
    (
        "NOT bucket_name = 'other-bucket'",
        {"AMS_001", "AMS_002", "AMS_003", "raw_002", "Gestures", "Empty 100%"},
    ),
    ("bucket_path = 'portal/raw_002.zip'", {"raw_002"}),
    # metadata: text with a string, numeric with a number; missing keys match nothing
    ("metadata->ei_check = '0'", {"AMS_002", "AMS_003"}),
    ("metadata->ei_check != '1'", {"AMS_002", "AMS_003"}),
    ("NOT metadata->ei_check = '1'", {"AMS_002", "AMS_003", "raw_001", "Gestures", "Empty 100%"}),
    ("metadata->age > 10", {"AMS_001"}),
    ("metadata->age < 10", {"AMS_002"}),
    ("metadata->age > '10'", {"AMS_001", "AMS_002", "raw_002"}),
    ("metadata->age >= 9 AND metadata->age <= 34.0", {"AMS_001", "AMS_002"}),
    ("metadata->age IN (9, 'forty')", {"AMS_002", "raw_002"}),
    ("metadata->age NOT IN (9, 'forty')", {"AMS_001"}),
    ("metadata->'weird key' = 'yes'", {"Gestures"}),
    ("metadata->a.b = 'dot'", {"Gestures"}),
    ("metadata->'it''s' LIKE 'QUOTED'", {"Gestures"}),
    ("metadata->subject NOT LIKE 'x%'", {"AMS_001"}),
    # CONTAINS is an exact file name
    ("file_names CONTAINS 'hr.png'", {"AMS_003"}),
    ("file_names CONTAINS 'png'", set()),
    # --labels: the item's label is one of them
    ("--labels sitting", {"AMS_001", "raw_002"}),
    ("--LABELS 'walking', running", {"AMS_002", "AMS_003"}),
    ("NOT --labels sitting AND dataset = 'AMS sorted'", {"AMS_002", "AMS_003"}),
    # AND binds tighter than OR; parentheses; NOT; keywords in any case
    (
        "name = 'AMS_001' OR name = 'raw_001' AND dataset = 'AMS Activity Study'",
        {"AMS_001", "raw_001"},
    ),
    ("(name = 'AMS_001' OR name = 'raw_001') AND dataset = 'AMS Activity Study'", {"raw_001"}),
    ("NOT dataset = 'AMS sorted'", {"raw_001", "raw_002", "Gestures", "Empty 100%"}),
    ("not (dataset = 'AMS sorted' or dataset = 'Transform tutorial')", {"raw_001", "raw_002"}),
    ("NOT NOT name = 'AMS_001'", {"AMS_001"}),
    ("DaTaSeT = 'AMS sorted' aNd NoT NAME like 'ams_001'", {"AMS_002", "AMS_003"}),
    # file_name: items with only the matching files
    (
        "dataset = 'AMS sorted' AND file_name IN ('ppg.csv', 'hr.png')",
        {"AMS_001": ["ppg.csv"], "AMS_002": ["ppg.csv"], "AMS_003": ["hr.png"]},
    ),
    (
        "file_name = 'ppg.csv' OR name = 'AMS_003'",
        {"AMS_001": ["ppg.csv"], "AMS_002": ["ppg.csv"], "AMS_003": ALL_FILES["AMS_003"]},
    ),
    ("NOT file_name LIKE '%.csv' AND dataset = 'AMS sorted'", {"AMS_003": ["hr.png"]}),
    ("file_name LIKE '%' AND dataset = 'Transform tutorial'", {"Gestures": ["gestures.parquet"]}),
    (
        "file_name > 'p'",
        {
            "AMS_001": ["polar_h10.csv", "ppg.csv"],
            "AMS_002": ["ppg.csv"],
            "raw_002": ["plot.png"],
        },
    ),
    (
        "file_name != 'data.csv' AND dataset = 'AMS Activity Study'",
        {"raw_002": ALL_FILES["raw_002"]},
    ),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[c[0] for c in CASES])
def test_filter_table(catalog: sa.Engine, query: str, expected) -> None:
    rows = find_items(catalog, query)
    got = {r["name"]: [f["name"] for f in r["files"]] for r in rows}
    if isinstance(expected, set):
        expected = {name: ALL_FILES[name] for name in expected}
    assert got == expected
    # ordered by dataset, then name (byte-wise)
    keys = [(r["dataset"], r["name"]) for r in rows]
    assert keys == sorted(keys)


ITEM_LEVEL = [q for q, expected in CASES if isinstance(expected, set)]


@pytest.mark.parametrize("query", ITEM_LEVEL, ids=ITEM_LEVEL)
def test_not_is_the_complement(catalog: sa.Engine, query: str) -> None:
    assert names(find_items(catalog, f"NOT ({query})")) == LIVE - names(find_items(catalog, query))


def test_item_fields_and_deleted_items(catalog: sa.Engine) -> None:
    (row,) = find_items(catalog, "total_file_count = 4 AND file_name = 'labels.csv'")
    assert row["name"] == "AMS_001"
    assert row["dataset"] == "AMS sorted"
    assert (row["bucket_name"], row["bucket_path"]) == (BUCKET, "sorted/AMS_001")
    assert (row["total_file_count"], row["total_file_size"]) == (4, 360)  # all files
    assert row["metadata"] == {"ei_check": "1", "age": "34", "subject": "AMS_001"}
    assert row["files"] == [
        {
            "name": "labels.csv",
            "sha256": f"{101:064x}",
            "size": 10,
            "blob_path": "blobs/1/labels.csv",
        }
    ]
    (gestures,) = find_items(catalog, "name = 'Gestures'")
    assert (gestures["bucket_name"], gestures["bucket_path"]) == (None, None)
    assert find_items(catalog, "name = 'AMS_004'") == []
    (deleted,) = find_items(catalog, "name = 'AMS_004'", include_deleted=True)
    assert deleted["deleted_at"] is not None and deleted["files"][0]["name"] == "ppg.csv"
    assert names(find_items(catalog, dataset="AMS sorted")) == {"AMS_001", "AMS_002", "AMS_003"}
    assert names(find_items(catalog, "id > 2", dataset="AMS sorted")) == {"AMS_003"}
    assert len(find_items(catalog, dataset="AMS sorted", include_deleted=True)) == 4
    assert find_items(catalog, dataset="no such dataset") == []
    with catalog.connect() as conn:  # inside a caller's transaction
        assert names(find_items(conn, "id = 3")) == {"AMS_003"}


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (datasets, items, files)
        }


INJECTIONS = [
    "name = 'x' OR 1=1 --",
    "name = 'x' OR 1=1",
    "name = 'x' --",
    "name = ''; DROP TABLE items; --'",
    "name = 'x'; DROP TABLE items; --",
    "name = 'x''; DROP TABLE items; --'",
    "name = 'x'' OR ''1''=''1'",
    "name = 'a\\'; DROP TABLE items; --'",
    'name = "x" OR "1"="1"',
    "name LIKE '%' ESCAPE ''",
    "name = 'AMS_001' /* comment */",
    "name = 'AMS_001' UNION SELECT * FROM items",
    "--labels x';DROP TABLE items;--",
    "--labels 'x'';DROP TABLE items;--'",
    "metadata->'x''); DROP TABLE items; --' = 1",
    "metadata->ei_check = 0; DELETE FROM items",
    "dataset = 'AMS sorted'); DELETE FROM items; --",
    "file_names CONTAINS 'x'') OR 1=1 --'",
    "id = 1 OR id = (SELECT 1)",
    "created > DATE('2022-08-01'); DROP TABLE files",
]


@pytest.mark.parametrize("query", INJECTIONS, ids=INJECTIONS)
def test_injection_is_a_syntax_error_or_a_literal(catalog: sa.Engine, query: str) -> None:
    before = _counts(catalog)
    try:
        rows = find_items(catalog, query)
    except ConfigError as exc:
        assert "\n" in str(exc) and "^" in str(exc)  # a syntax error, with its caret
    else:
        assert rows == []  # the whole text was a literal: it matches nothing here
    assert sa.inspect(catalog).has_table("items")
    assert _counts(catalog) == before
    assert len(find_items(catalog, dataset="AMS sorted")) == 3


@pytest.mark.parametrize(
    "query",
    [
        "name = 'x'' OR ''1''=''1'",
        "metadata->'k''); DROP TABLE items; --' = 'DROP TABLE files'",
        "--labels 'x'';DROP TABLE items;--'",
    ],
)
def test_values_are_bound_parameters(catalog: sa.Engine, query: str) -> None:
    sql = str(select_items(compile_filter(query)).compile(dialect=catalog.dialect))
    assert "DROP" not in sql and "1'='1" not in sql


# --- the `edgeloop items` command (SQLite catalog of the edgeloop home) -----------------


@pytest.fixture
def home(edgeloop_home: Path) -> Path:
    fill(engine_for(get_settings().catalog_url))
    return edgeloop_home


def test_items_command(home: Path, capsys) -> None:
    assert main(["items", "AMS sorted", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["AMS_001", "AMS_002", "AMS_003"]
    assert rows[0]["files"][0] == {
        "name": "accelerometer.csv",
        "sha256": f"{100:064x}",
        "size": 200,
        "blob_path": "blobs/1/accelerometer.csv",
    }

    query = "dataset LIKE 'AMS%' AND file_name LIKE '%.png'"
    assert main(["items", "--filter", query, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: [f["name"] for f in r["files"]] for r in rows} == {
        "AMS_003": ["hr.png"],
        "raw_002": ["plot.png"],
    }

    assert main(["items", "--filter", query]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("AMS Activity Study\traw_002\tsitting\ttraining\t")
    assert lines[0].endswith("\tplot.png")
    assert lines[1].split("\t")[:3] == ["AMS sorted", "AMS_003", "running"]
    assert lines[1].endswith("\thr.png")
    assert "2 item(s)" in err

    assert main(["items", "AMS sorted", "--filter", "metadata->ei_check = 0"]) == 0
    out = capsys.readouterr().out
    assert [line.split("\t")[0] for line in out.splitlines()] == ["AMS_002", "AMS_003"]
    assert '{"ei_check": "0", "age": "9"}' in out

    assert main(["items", "AMS sorted", "--deleted", "--filter", "--labels sitting"]) == 0
    out = capsys.readouterr().out
    assert [line.split("\t")[0] for line in out.splitlines()] == ["AMS_001", "AMS_004"]
    assert out.splitlines()[1].endswith(" (deleted)")


def test_items_command_errors(home: Path, capsys) -> None:
    assert main(["items", "--filter", "file_name LIKE '%.png'"]) == 2
    assert "name the dataset" in capsys.readouterr().err
    assert main(["items"]) == 2
    assert "name the dataset" in capsys.readouterr().err
    assert main(["items", "AMS sorted", "--filter", "name = 'x' OR 1=1 --"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: --filter: unexpected '1' (expected '(', --labels, NOT, a field, got '1')",
        "    name = 'x' OR 1=1 --",
        "                  ^",
    ]
    assert main(["items", "AMS sorted", "--filter", "nme = 'x'"]) == 2
    assert "unknown field 'nme'" in capsys.readouterr().err


def test_stats_command(home: Path, capsys) -> None:
    assert main(["stats", "AMS sorted", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "label": {"running": 1, "sitting": 1, "walking": 1},
        "category": {"training": 3},
    }
    assert main(["stats", "AMS sorted"]) == 0
    assert "project AMS sorted: 3 item(s)" in capsys.readouterr().out
