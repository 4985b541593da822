"""Property: whatever JSON sits next to a valid config, loading never raises, the valid
pipeline always builds, each bad file gets its invalid-config DAG, and validate agrees."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.dag_factory import build_files, check_files

VALID = {
    "id": "good",
    "name": "Good",
    "steps": [
        {
            "name": "import",
            "builtinTransformationBlock": {"type": "s3-to-project", "path": "s3://bkt/data/"},
        }
    ],
}
KEYS = st.sampled_from(
    [
        "id",
        "name",
        "steps",
        "schedule",
        "intervalStr",
        "tags",
        "project",
        "retries",
        "type",
        "path",
        "category",
        "concurrency",
        "builtinTransformationBlock",
        "transformationBlockId",
        "endpoint",
        "retrainModel",
        "buildBinaryModelType",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["@never", "@", "99999999999d", "1d", "..", "s3://bkt/", "project-action"])
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=20,
)


def _mutated(draw_path: list, value) -> dict:
    """VALID with the value at a path of its keys replaced."""
    doc = json.loads(json.dumps(VALID))
    node = doc
    for key in draw_path[:-1]:
        node = node[key]
    node[draw_path[-1]] = value
    return doc


PATHS = st.sampled_from(
    [
        ["name"],
        ["id"],
        ["steps"],
        ["steps", 0, "name"],
        ["steps", 0, "builtinTransformationBlock"],
        ["steps", 0, "builtinTransformationBlock", "type"],
        ["steps", 0, "builtinTransformationBlock", "path"],
        ["steps", 0, "category"],
    ]
)
DOCS = JSON | st.builds(_mutated, PATHS, JSON)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(docs=st.lists(DOCS, min_size=1, max_size=3))
def test_generated_configs_never_break_the_valid_one(docs) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "a-good.json").write_text(json.dumps(VALID))
        for i, doc in enumerate(docs):
            (folder / f"gen{i}.json").write_text(json.dumps(doc))
        files = sorted(folder.glob("*.json"))
        built = build_files(files)  # never raises
        assert "invalid-config" not in built.dags["good"].tags
        assert sorted(built.dag_of_file) == sorted(map(str, files))  # one DAG per file
        for file, dag_id in built.dag_of_file.items():
            invalid = "invalid-config" in built.dags[dag_id].tags
            assert invalid == (file in built.errors), file
        assert set(check_files(files)) == set(built.errors)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=DOCS | st.lists(DOCS, max_size=3))
def test_the_fast_schema_check_never_passes_what_the_reference_validator_refuses(doc) -> None:
    """A valid document is recognised by jsonschema-rs; the Python validator (strict about
    integers) is the reference: whatever the fast path lets through, it accepts too."""
    from edgeloop.config.loader import _fast_validator, _integral_float, _validator

    definition = "steps" if isinstance(doc, list) else "pipeline"
    if _fast_validator(definition).is_valid(doc) and not _integral_float(doc):
        assert list(_validator(definition).iter_errors(doc)) == []


def test_an_integral_float_is_refused_although_json_schema_calls_it_an_integer(tmp_path) -> None:
    from edgeloop.config.loader import load_pipeline
    from edgeloop.errors import ConfigError

    doc = json.loads(json.dumps(VALID))
    doc["retries"] = 2.0
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"\$\.retries"):
        load_pipeline(tmp_path / "p.json")
