"""Train, retrain (with the quality gate) and evaluate a project's classifier.

``train(project, impulse)`` trains on the project's ``training`` items (a validation
split by item, seeded), evaluates on its ``testing`` items, stores the impulse, the
``.keras`` file, the features, a confusion-matrix PNG and the metrics as the next
model, and makes it current. ``retrain(project)`` does the same with the current
model's impulse on the project as it is now, then applies the quality gate: the new
model becomes current only if its test accuracy is at least the current model's,
re-evaluated now on the same testing set, minus ``max_drop``. A model that fails the
gate is stored, not promoted, and its record says why.

Training is deterministic for a given seed and data: the rows are ordered by content
hash, Keras is seeded (``keras.utils.set_random_seed``) and TensorFlow's ops are
deterministic (``enable_op_determinism``, one thread per op pool).
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import models, now
from edgeloop.errors import TrainingError
from edgeloop.training import registry
from edgeloop.training.features import FeatureSet, compute_features
from edgeloop.training.impulse import Impulse, load_impulse, parse_impulse

log = logging.getLogger(__name__)

DEFAULT_MAX_DROP = 0.01
_ACTIVATIONS = {"relu": "relu", "relu6": "relu6", "linear": None}


# -- TensorFlow set-up -------------------------------------------------------------------

_configured = False


def keras_seeded(seed: int):  # -> the keras module
    """Keras with deterministic, single-threaded TensorFlow ops and every seed set."""
    global _configured
    from edgeloop.deploy.convert import quiet_tensorflow

    quiet_tensorflow()
    import keras
    import tensorflow as tf

    if not _configured:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already initialized in this process
            log.debug("TensorFlow thread pools already set up; keeping them")
        tf.config.experimental.enable_op_determinism()
        _configured = True
    keras.utils.set_random_seed(seed)
    return keras


def build_network(impulse: Impulse, input_shape: tuple[int, ...], n_classes: int):
    """The impulse's layers, then a softmax dense layer with one unit per label."""
    keras = keras_seeded(impulse.seed)
    layers = [keras.Input(input_shape)]
    for spec in impulse.learning["layers"]:
        kind = spec["type"]
        act = _ACTIVATIONS[spec.get("activation", "relu")]
        if kind == "dense":
            layers.append(keras.layers.Dense(spec["units"], activation=act))
        elif kind == "conv2d":
            layers.append(
                keras.layers.Conv2D(
                    spec["filters"],
                    spec.get("kernelSize", 3),
                    strides=spec.get("strides", 1),
                    padding=spec.get("padding", "same"),
                    activation=act,
                )
            )
        elif kind == "depthwiseConv2d":
            layers.append(
                keras.layers.DepthwiseConv2D(
                    spec.get("kernelSize", 3), padding=spec.get("padding", "same"), activation=act
                )
            )
        elif kind == "maxPool2d":
            layers.append(keras.layers.MaxPooling2D(spec.get("poolSize", 2)))
        elif kind == "averagePool2d":
            layers.append(keras.layers.AveragePooling2D(spec.get("poolSize", 2)))
        elif kind == "globalAveragePool2d":
            layers.append(keras.layers.GlobalAveragePooling2D())
        elif kind == "flatten":
            layers.append(keras.layers.Flatten())
        elif kind == "reshape":
            layers.append(keras.layers.Reshape(tuple(spec["shape"])))
        elif kind == "dropout":
            layers.append(keras.layers.Dropout(spec["rate"], seed=impulse.seed))
    layers.append(keras.layers.Dense(n_classes, activation="softmax"))
    try:
        net = keras.Sequential(layers)
    except ValueError as exc:
        raise TrainingError(
            f"the impulse's learning.layers do not fit features of shape {input_shape}: {exc}"
        ) from exc
    net.compile(
        optimizer=keras.optimizers.Adam(learning_rate=impulse.learning["learningRate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return net


def load_model(blobs, sha: str):
    """A stored ``.keras`` model (checked against its hash)."""
    from edgeloop.deploy.convert import quiet_tensorflow

    quiet_tensorflow()
    import keras

    data = registry.get_bytes(blobs, sha, what="model file")
    with tempfile.TemporaryDirectory(prefix="edgeloop-model-") as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(data)
        return keras.models.load_model(path, compile=False)


# -- data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    labels: list[str]
    train: FeatureSet
    validation: FeatureSet
    test: FeatureSet  # every labeled testing row (labels the model lacks count as errors)


def split_features(fs: FeatureSet, impulse: Impulse, project: str) -> Split:
    train_all = fs.category("training")
    test = fs.category("testing")
    labels = sorted(set(train_all.labels.tolist()))
    if len(labels) < 2:
        raise TrainingError(
            f"project {project!r}: training needs labeled items of at least 2 labels in the "
            f"training category, found {len(train_all)} row(s) with labels {labels}"
        )
    if len(test) == 0:
        raise TrainingError(
            f"project {project!r}: no labeled items in the testing category to evaluate on "
            "(label the data with category 'split' or 'testing')"
        )
    # Validation: whole items (all their windows), drawn with the seed from the content order.
    shas = np.unique(train_all.item_shas)
    n_val = round(len(shas) * impulse.learning["validationSplit"])
    if n_val >= len(shas):
        n_val = len(shas) - 1
    chosen = np.random.default_rng(impulse.seed).permutation(len(shas))[:n_val]
    val_mask = np.isin(train_all.item_shas, shas[chosen])
    return Split(labels, train_all.select(~val_mask), train_all.select(val_mask), test)


def _indices(labels: list[str], names: np.ndarray) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    return np.asarray([index[n] for n in names], np.int64)


def predict_labels(net, labels: list[str], x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return np.asarray([], dtype="U")
    probs = np.asarray(net.predict(x, batch_size=256, verbose=0))
    return np.asarray(labels, dtype="U")[probs.argmax(axis=1)]


def classification_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class precision/recall and the confusion matrix (rows: truth)."""
    names = sorted(set(truth.tolist()) | set(predicted.tolist()))
    index = {n: i for i, n in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), np.int64)
    for t, p in zip(truth, predicted, strict=True):
        matrix[index[t], index[p]] += 1
    per_class: dict[str, dict[str, float | int | None]] = {}
    for name, i in index.items():
        tp, predicted_n, actual_n = matrix[i, i], matrix[:, i].sum(), matrix[i, :].sum()
        per_class[name] = {
            "precision": round(float(tp / predicted_n), 6) if predicted_n else None,
            "recall": round(float(tp / actual_n), 6) if actual_n else None,
            "support": int(actual_n),
        }
    return {
        "accuracy": round(float((truth == predicted).mean()), 6) if len(truth) else None,
        "samples": len(truth),
        "per_class": per_class,
        "confusion": {"labels": names, "matrix": matrix.tolist()},
    }


def confusion_png(confusion: dict[str, Any], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, matrix = confusion["labels"], np.asarray(confusion["matrix"])
    size = max(3.0, 0.5 * len(names) + 1.5)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    top = matrix.max() if matrix.size else 0
    for (i, j), n in np.ndenumerate(matrix):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="white" if n > top / 2 else "black")  # fmt: skip
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _fit_anomaly(impulse: Impulse, split: Split) -> tuple[bytes, dict[str, Any]] | None:
    spec = impulse.anomaly
    if spec is None:
        return None
    from sklearn.cluster import KMeans

    x = split.train.x.reshape(len(split.train), -1)
    k = min(spec["clusters"], len(x))
    km = KMeans(n_clusters=k, random_state=impulse.seed, n_init=10).fit(x)
    dist = km.transform(x).min(axis=1)
    threshold = float(np.quantile(dist, spec["threshold"]))
    test_x = split.test.x.reshape(len(split.test), -1)
    test_dist = km.transform(test_x).min(axis=1) if len(test_x) else np.zeros(0)
    buf = io.BytesIO()
    np.savez(buf, centres=km.cluster_centers_.astype(np.float32), threshold=np.float32(threshold))
    return buf.getvalue(), {
        "clusters": int(k),
        "threshold": round(threshold, 6),
        "testing_anomalous_fraction": round(float((test_dist > threshold).mean()), 6)
        if len(test_dist)
        else None,
    }


# -- train / retrain ---------------------------------------------------------------------


@dataclass(frozen=True)
class Trained:
    net: Any
    split: Split
    metrics: dict[str, Any]
    anomaly: bytes | None


def fit(impulse: Impulse, fs: FeatureSet, project: str) -> Trained:
    """Fit the impulse's network on the training rows; evaluate on validation and testing."""
    split = split_features(fs, impulse, project)
    net = build_network(impulse, fs.shape, len(split.labels))
    y = _indices(split.labels, split.train.labels)
    val_data = None
    if len(split.validation):
        val_data = (split.validation.x, _indices(split.labels, split.validation.labels))
    log.info(
        "training on %s row(s), validating on %s, testing on %s; %s labels, %s epochs",
        len(split.train),
        len(split.validation),
        len(split.test),
        len(split.labels),
        impulse.learning["epochs"],
    )
    t0 = time.monotonic()
    history = net.fit(
        split.train.x,
        y,
        epochs=impulse.learning["epochs"],
        batch_size=impulse.learning["batchSize"],
        validation_data=val_data,
        shuffle=True,
        verbose=0,
    )
    fit_s = time.monotonic() - t0
    test = classification_metrics(
        split.test.labels, predict_labels(net, split.labels, split.test.x)
    )
    val_acc = None
    if len(split.validation):
        pred = predict_labels(net, split.labels, split.validation.x)
        val_acc = round(float((pred == split.validation.labels).mean()), 6)
    metrics: dict[str, Any] = {
        "validation_accuracy": val_acc,
        "test_accuracy": test["accuracy"],
        "per_class": test["per_class"],
        "confusion": test["confusion"],
        "training_loss": round(float(history.history["loss"][-1]), 6),
        "rows": {
            "training": len(split.train),
            "validation": len(split.validation),
            "testing": len(split.test),
        },
        "items": {
            "training": len(np.unique(split.train.item_ids)),
            "validation": len(np.unique(split.validation.item_ids)),
            "testing": len(np.unique(split.test.item_ids)),
        },
        "epochs": impulse.learning["epochs"],
        "seed": impulse.seed,
        "fit_seconds": round(fit_s, 3),
    }
    anomaly = _fit_anomaly(impulse, split)
    if anomaly is not None:
        metrics["anomaly"] = anomaly[1]
    return Trained(net, split, metrics, anomaly[0] if anomaly else None)


def _store_model(
    catalog: Catalog,
    blobs,
    project: str,
    impulse: Impulse,
    fs: FeatureSet,
    trained: Trained,
    *,
    kind: str,
    gate: dict[str, Any] | None,
    promote: bool,
    run: registry.RunKey | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgeloop-train-") as tmp:
        path = Path(tmp) / "model.keras"
        trained.net.save(path)
        model_sha = registry.put_file(blobs, path)
    features_sha = registry.put_bytes(blobs, fs.to_npz_bytes())
    anomaly_sha = registry.put_bytes(blobs, trained.anomaly) if trained.anomaly else None
    title = f"{project} ({kind}): test accuracy {trained.metrics['test_accuracy']}"
    confusion_sha = registry.put_bytes(blobs, confusion_png(trained.metrics["confusion"], title))
    with catalog.begin() as conn:
        ds = registry.project_id(conn, project)
        number = registry.next_number(conn, models, ds)
        ts = now()
        conn.execute(
            models.insert().values(
                dataset_id=ds,
                number=number,
                kind=kind,
                impulse=impulse.to_json(),
                labels=json.dumps(trained.split.labels),
                metrics=json.dumps(trained.metrics, sort_keys=True),
                gate=json.dumps(gate, sort_keys=True) if gate is not None else None,
                model_sha=model_sha,
                features_sha=features_sha,
                confusion_sha=confusion_sha,
                anomaly_sha=anomaly_sha,
                promoted_at=ts if promote else None,
                created_at=ts,
                **registry.run_values(run),
            )
        )
    log.info(
        "%s: model %s stored (%s); validation accuracy %s, test accuracy %s",
        project,
        number,
        "current" if promote else "not promoted",
        trained.metrics["validation_accuracy"],
        trained.metrics["test_accuracy"],
    )
    return {
        "project": project,
        "model": number,
        "promoted": promote,
        "metrics": trained.metrics,
        "gate": gate,
        "labels": trained.split.labels,
        "artifacts": {
            "model": model_sha,
            "features": features_sha,
            "confusion_png": confusion_sha,
            "anomaly": anomaly_sha,
        },
        "confusion_png": blob_location(blobs, confusion_sha),
    }


def blob_location(blobs, sha: str) -> str:
    """Where a blob lives (a local path or an s3:// URI)."""
    if hasattr(blobs, "uri"):
        return f"{blobs.uri}{blobs.relpath(sha)}"
    return str(Path(blobs.root) / blobs.relpath(sha))


def _context(catalog: Catalog | None, blobs) -> tuple[Catalog, Any]:
    from edgeloop.storage.blobs import BlobStore

    return catalog or Catalog.from_settings(), blobs or BlobStore.from_settings()


def project_features(
    catalog: Catalog, blobs, project: str, impulse: Impulse
) -> tuple[FeatureSet, list[dict[str, Any]]]:
    items = catalog.list_items(project)
    if not items:
        raise TrainingError(f"project {project!r} has no items (import data first)")
    return compute_features(impulse, items, blobs), items


def train(
    project: str,
    impulse: Impulse | dict[str, Any] | str | Path,
    *,
    catalog: Catalog | None = None,
    blobs=None,
) -> dict[str, Any]:
    """Train a model with ``impulse`` (a file, a document or an ``Impulse``) and make it
    the project's current model. Returns the model's number, metrics and artifacts."""
    catalog, blobs = _context(catalog, blobs)
    if isinstance(impulse, str | Path):
        impulse = load_impulse(impulse)
    elif isinstance(impulse, dict):
        impulse = parse_impulse(impulse)
    fs, _ = project_features(catalog, blobs, project, impulse)
    trained = fit(impulse, fs, project)
    return _store_model(
        catalog, blobs, project, impulse, fs, trained, kind="train", gate=None, promote=True
    )


def evaluate(catalog: Catalog, blobs, model: dict[str, Any], fs: FeatureSet) -> dict[str, Any]:
    """A stored model's metrics on the labeled testing rows of ``fs`` (same impulse)."""
    net = load_model(blobs, model["model_sha"])
    test = fs.category("testing")
    return classification_metrics(test.labels, predict_labels(net, model["labels"], test.x))


def run_model(catalog: Catalog, blobs, project: str, run: registry.RunKey) -> dict[str, Any] | None:
    """The model the pipeline task ``run`` already stored (a retried or cleared task), as
    ``retrain`` returns it with ``reused``; None if it stored none."""
    row = registry.find_run_record(catalog, models, project, run, made="stored model")
    if row is None:
        return None
    model = registry.model_by_id(catalog, row.id)
    gate = model["gate"]
    return {
        "project": project,
        "model": model["number"],
        "promoted": model["promoted_at"] is not None,
        "metrics": model["metrics"],
        "gate": gate,
        "labels": model["labels"],
        "artifacts": {
            "model": model["model_sha"],
            "features": model["features_sha"],
            "confusion_png": model["confusion_sha"],
            "anomaly": model["anomaly_sha"],
        },
        "confusion_png": blob_location(blobs, model["confusion_sha"]),
        "previous_model": gate["current_model"] if gate else None,
        "reused": True,
    }


def retrain(
    project: str,
    *,
    max_drop: float = DEFAULT_MAX_DROP,
    run: registry.RunKey | None = None,
    catalog: Catalog | None = None,
    blobs=None,
) -> dict[str, Any]:
    """Retrain with the current model's impulse; promote only through the quality gate.

    The result has ``promoted`` and ``gate`` (``passed``, both accuracies, ``reason``).
    With ``run`` (a pipeline task), a model that task already stored is returned instead
    (``reused``): a retried task never trains a second model nor gates against its own.
    """
    if not 0 <= max_drop <= 1:
        raise TrainingError(f"qualityGate.maxDrop must be within 0..1, got {max_drop!r}")
    catalog, blobs = _context(catalog, blobs)
    if run is not None and (done := run_model(catalog, blobs, project, run)) is not None:
        return done
    current = registry.require_current_model(catalog, project)
    impulse = parse_impulse(current["impulse"], file=f"{project} model {current['number']}")
    fs, _ = project_features(catalog, blobs, project, impulse)
    trained = fit(impulse, fs, project)
    before = evaluate(catalog, blobs, current, fs)["accuracy"]
    after = trained.metrics["test_accuracy"]
    passed = after >= before - max_drop - 1e-12
    reason = (
        f"test accuracy {after:.4f} >= current model {current['number']}'s {before:.4f} "
        f"- maxDrop {max_drop}"
        if passed
        else f"test accuracy {after:.4f} < current model {current['number']}'s {before:.4f} "
        f"- maxDrop {max_drop}: not promoted, model {current['number']} stays current"
    )
    gate = {
        "passed": passed,
        "max_drop": max_drop,
        "current_model": current["number"],
        "current_test_accuracy": before,
        "new_test_accuracy": after,
        "testing_rows": trained.metrics["rows"]["testing"],
        "reason": reason,
    }
    log.info("%s: quality gate %s: %s", project, "passed" if passed else "failed", reason)
    result = _store_model(
        catalog,
        blobs,
        project,
        impulse,
        fs,
        trained,
        kind="retrain",
        gate=gate,
        promote=passed,
        run=run,
    )
    result["previous_model"] = current["number"]
    result["reused"] = False
    return result
