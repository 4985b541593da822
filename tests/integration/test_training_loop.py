"""The model side of the loop on the demo digits (8x8 PNGs): train, deterministic retrain,
the quality gate, the explorer, versions (restore byte for byte), deployments, the CLI.

One project is trained once per module and the tests run in file order on it (each
test states what it adds); the polluted-data test comes last because it relabels the
training set.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeloop_dev.devenv import digit_objects

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROJECT = "digits"


def _impulse(epochs: int = 8) -> dict:
    doc = json.loads((REPO / "include" / "impulses" / "digits.json").read_text())
    doc["learning"]["epochs"] = epochs
    return doc


class Env:
    def __init__(self, home: Path) -> None:
        from edgeloop.catalog.store import Catalog
        from edgeloop.storage.blobs import BlobStore

        self.home = home
        self.catalog = Catalog.from_settings()
        self.blobs = BlobStore.from_settings()
        self.objects: dict[str, bytes] = {}

    def add(self, objects: dict[str, bytes], project: str = PROJECT) -> list[int]:
        from edgeloop.training.samples import add_objects

        self.objects.update(objects)
        return add_objects(project, objects, catalog=self.catalog, blobs=self.blobs)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from edgeloop.catalog.store import upgrade
    from edgeloop.settings import get_settings

    home = tmp_path_factory.mktemp("training") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGELOOP_HOME", str(home))
        for key in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT", "EDGELOOP_BLOB_CONN_ID"):
            mp.delenv(key, raising=False)
        upgrade(get_settings().catalog_url)
        e = Env(home)
        e.add(digit_objects(per_label=30, unlabeled=12))
        yield e


@pytest.fixture(scope="module")
def first(env: Env) -> dict:
    from edgeloop.training.train import train

    return train(PROJECT, _impulse(), catalog=env.catalog, blobs=env.blobs)


def _comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "fit_seconds"}


def test_retrain_before_any_training_says_how_to_train(env: Env) -> None:
    from edgeloop.errors import TrainingError
    from edgeloop.training.train import retrain

    env.add(digit_objects(per_label=3, unlabeled=0, start=60), project="never-trained")
    with pytest.raises(TrainingError) as exc:
        retrain("never-trained", catalog=env.catalog, blobs=env.blobs)
    assert "You will need to have trained your project at least once" in str(exc.value)
    assert "edgeloop train never-trained --impulse" in str(exc.value)


def test_train_stores_model_one_with_metrics_and_artifacts(env: Env, first: dict) -> None:
    from edgeloop.training import registry

    assert first["model"] == 1 and first["promoted"]
    m = first["metrics"]
    assert m["rows"] == {"training": 192, "validation": 48, "testing": 60}
    assert m["test_accuracy"] > 0.8 and m["validation_accuracy"] > 0.7
    assert set(m["per_class"]) == {str(d) for d in range(10)}
    assert all(0 <= c["recall"] <= 1 for c in m["per_class"].values())
    assert np.asarray(m["confusion"]["matrix"]).sum() == 60
    png = registry.get_bytes(env.blobs, first["artifacts"]["confusion_png"], what="png")
    assert png.startswith(b"\x89PNG")
    keras_file = registry.get_bytes(env.blobs, first["artifacts"]["model"], what="model")
    assert keras_file[:2] == b"PK"  # a .keras file is a zip
    model = registry.current_model(env.catalog, PROJECT)
    assert model["number"] == 1 and model["impulse"]["input"] == _impulse()["input"]
    assert model["impulse"]["learning"]["epochs"] == 8


def test_retrain_on_the_same_data_is_deterministic_and_promoted(env: Env, first: dict) -> None:
    from edgeloop.training import registry
    from edgeloop.training.train import retrain

    again = retrain(PROJECT, catalog=env.catalog, blobs=env.blobs)
    assert again["model"] == 2
    assert _comparable(again["metrics"]) == _comparable(first["metrics"])
    assert again["artifacts"]["features"] == first["artifacts"]["features"]
    gate = again["gate"]
    assert gate["passed"] and again["promoted"]
    assert gate["current_test_accuracy"] == first["metrics"]["test_accuracy"]
    assert registry.current_model(env.catalog, PROJECT)["number"] == 2


def test_explorer_keeps_old_points_and_places_new_ones(env: Env, first: dict) -> None:
    from edgeloop.training.explorer import explorer_points_of, refresh_explorer

    one = refresh_explorer(PROJECT, catalog=env.catalog, blobs=env.blobs)
    assert one["refit"] and one["points"] == 312 and one["new"] == 0
    assert one["unlabeled"] == 12 and one["suggestions"] == 12
    before = {p["item"]: (p["x"], p["y"]) for p in explorer_points_of(PROJECT, catalog=env.catalog)}
    env.add(digit_objects(per_label=2, unlabeled=0, start=30))
    two = refresh_explorer(PROJECT, catalog=env.catalog, blobs=env.blobs)
    assert not two["refit"] and two["points"] == 332 and two["new"] == 20
    points = explorer_points_of(PROJECT, catalog=env.catalog)
    after = {p["item"]: (p["x"], p["y"]) for p in points}
    assert {k: after[k] for k in before} == before  # old points did not move
    new = [p for p in points if p["new"]]
    assert len(new) == 20 and all(p["item"] not in before for p in new)
    # a placed digit lands among its own kind: its nearest old labeled point shares its label
    old = [p for p in points if not p["new"] and p["label"]]
    xy = np.asarray([(p["x"], p["y"]) for p in old])
    hits = 0
    for p in new:
        nearest = old[int(np.argmin(((xy - (p["x"], p["y"])) ** 2).sum(axis=1)))]
        hits += nearest["label"] == p["label"]
    assert hits >= 12  # chance would be 2 of 20
    png = env.blobs.read_bytes(two["png_sha"])
    from PIL import Image

    assert Image.open(io.BytesIO(png)).size[0] > 300


def test_suggestions_are_mostly_right_and_accepted_above_confidence(env: Env) -> None:
    from edgeloop.training.explorer import accept_suggestions, explorer_points_of

    points = [p for p in explorer_points_of(PROJECT, catalog=env.catalog) if not p["label"]]
    assert len(points) == 12
    truth = {p["item"]: p["item"].split("/")[-1].split(".")[0] for p in points}
    right = sum(p["suggested_label"] == truth[p["item"]] for p in points)
    assert right >= 9
    assert all(0 < p["confidence"] <= 1 for p in points)
    confident = {p["item"] for p in points if p["confidence"] >= 0.9}
    result = accept_suggestions(PROJECT, min_confidence=0.9, catalog=env.catalog)
    assert set(result["items"]) == confident
    labels = {r["name"]: r["label"] for r in env.catalog.list_items(PROJECT)}
    for p in points:
        want = p["suggested_label"] if p["item"] in confident else None
        assert labels[p["item"]] == want
    again = accept_suggestions(PROJECT, min_confidence=0.9, catalog=env.catalog)
    assert again["applied"] == 0  # already labeled


def test_version_restore_reproduces_every_file_byte_for_byte(env: Env, tmp_path: Path) -> None:
    from edgeloop.training.versions import create_version, restore_version, show_version

    config = [{"name": "demo", "builtinTransformationBlock": {"type": "project-action"}}]
    v = create_version(PROJECT, config=config, catalog=env.catalog, blobs=env.blobs)
    assert v["version"] == 1 and v["model"] == 2 and v["items"] == 332
    shown = show_version(PROJECT, 1, catalog=env.catalog, blobs=env.blobs)
    assert shown["manifest"]["config"] == config
    out = restore_version(PROJECT, 1, tmp_path / "v1", catalog=env.catalog, blobs=env.blobs)
    root = tmp_path / "v1"
    items = {r["name"]: r for r in env.catalog.list_items(PROJECT)}
    for name, data in env.objects.items():
        if name not in items:
            continue  # another project's object
        item = items[name]
        folder = (
            f"{item['category']}/{item['label']}" if item["label"] else "unlabeled"
        )  # the seed's layout
        restored = root / folder / Path(name).name
        assert restored.read_bytes() == data, restored
    model = shown["manifest"]["model"]
    for art, sha in model["artifacts"].items():
        assert hashlib.sha256((root / "artifacts" / art).read_bytes()).hexdigest() == sha
    assert json.loads((root / "artifacts" / "pipeline.json").read_text()) == config
    sums = (root / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == out["files"]
    for line in sums:
        sha, rel = line.split("  ", 1)
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == sha
    assert sum(1 for p in root.rglob("*.png") if "artifacts" not in p.parts) == 332
    with pytest.raises(Exception, match="new or empty folder"):
        restore_version(PROJECT, 1, root, catalog=env.catalog, blobs=env.blobs)


def test_deployment_builds_a_verified_int8_library(env: Env) -> None:
    from edgeloop.training import registry
    from edgeloop.training.deployments import build_deployment

    dep = build_deployment(PROJECT, model_type="int8", catalog=env.catalog, blobs=env.blobs)
    assert dep["deployment"] == 1 and dep["model"] == 2 and dep["published"]
    assert dep["verification"]["rule"] == "bit-exact"
    assert dep["verification"]["max_abs_diff"] == 0
    assert dep["accuracy"]["int8"] > 0.8
    import zipfile

    with zipfile.ZipFile(io.BytesIO(env.blobs.read_bytes(dep["zip_sha"]))) as zf:
        names = zf.namelist()
    assert any(n.endswith("model_metadata.h") for n in names)
    listed = registry.list_deployments(env.catalog, PROJECT)
    assert [(d["number"], d["current"]) for d in listed] == [(1, True)]


def test_version_diff_after_relabel_and_new_items(env: Env) -> None:
    from edgeloop.catalog.tables import items
    from edgeloop.training.versions import create_version, diff_versions

    added = env.add(digit_objects(per_label=1, unlabeled=0, start=40))
    three = next(r["name"] for r in env.catalog.list_items(PROJECT) if r["label"] == "3")
    with env.catalog.begin() as conn:
        conn.execute(items.update().where(items.c.name == three).values(label="8"))
    create_version(PROJECT, deployment_numbers=[1], catalog=env.catalog, blobs=env.blobs)
    d = diff_versions(PROJECT, 1, 2, catalog=env.catalog, blobs=env.blobs)
    assert len(d["added"]) == len(added) == 10 and d["removed"] == []
    assert d["relabeled"] == [{"name": three, "from": "3", "to": "8"}]
    assert d["metrics"]["test_accuracy"]["change"] == 0


def test_cli_lists_models_versions_deployments(env: Env, capsys: pytest.CaptureFixture) -> None:
    from edgeloop.cli import main

    assert main(["models", PROJECT, "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert [(m["number"], m["current"]) for m in models] == [(1, False), (2, True)]
    assert main(["versions", PROJECT, "--json"]) == 0
    assert [v["number"] for v in json.loads(capsys.readouterr().out)] == [1, 2]
    assert main(["deployments", PROJECT]) == 0
    assert "int8" in capsys.readouterr().out
    assert main(["version", "show", PROJECT, "9"]) == 2
    assert "has no version 9" in capsys.readouterr().err


def test_polluted_training_set_is_not_promoted(env: Env, first: dict) -> None:
    from edgeloop.catalog.tables import items
    from edgeloop.training import registry
    from edgeloop.training.train import retrain

    rows = [r for r in env.catalog.list_items(PROJECT) if r["category"] == "training"]
    rows = [r for r in rows if r["label"]]
    rng = np.random.default_rng(7)
    flipped = rng.permutation(len(rows))[: int(len(rows) * 0.7)]
    with env.catalog.begin() as conn:
        for i in flipped:
            r = rows[int(i)]
            conn.execute(
                items.update()
                .where(items.c.id == r["id"])
                .values(label=str((int(r["label"]) + 1 + int(i) % 9) % 10))
            )
    result = retrain(PROJECT, catalog=env.catalog, blobs=env.blobs)
    assert not result["promoted"] and not result["gate"]["passed"]
    assert result["gate"]["new_test_accuracy"] < result["gate"]["current_test_accuracy"] - 0.01
    assert "not promoted" in result["gate"]["reason"]
    assert registry.current_model(env.catalog, PROJECT)["number"] == 2
    stored = registry.get_model(env.catalog, PROJECT, result["model"])
    assert stored["promoted_at"] is None and stored["gate"]["passed"] is False
