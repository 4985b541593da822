"""The data explorer: every item on a stable 2-D map, with label suggestions.

Embeddings are the current model's penultimate layer (the network without its
softmax layer) or, before any training, the processed features of the impulse.
They are mapped to 2-D with openTSNE. The fitted map is stored; on the next
refresh with the same embeddings, items already on the map keep their coordinates
and new items are placed into it with ``TSNEEmbedding.transform`` (the old points
do not move). When the embeddings change (a new current model) or the new items
outnumber the map's own, the map is refitted, initialized from the previous
coordinates so the layout stays recognisable.

Each unlabeled item gets a suggested label and a confidence: the distance-weighted
vote of its ``k`` nearest labeled neighbours in embedding space.
``accept_suggestions`` applies those above a confidence.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
from typing import Any

import numpy as np
import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import explorer_maps, explorer_points, items, now
from edgeloop.errors import TrainingError
from edgeloop.training import registry
from edgeloop.training.features import FeatureSet, compute_features
from edgeloop.training.impulse import Impulse, load_impulse, parse_impulse

log = logging.getLogger(__name__)

NEIGHBOURS = 10
MIN_POINTS = 5


def embeddings(blobs, model: dict[str, Any] | None, fs: FeatureSet) -> np.ndarray:
    """(rows, d) float32: the model without its last layer, or the flattened features."""
    if model is None or len(fs) == 0:
        return fs.x.reshape(len(fs), -1).astype(np.float32)
    from edgeloop.training.train import load_model

    net = load_model(blobs, model["model_sha"])
    if len(net.layers) < 2:
        return fs.x.reshape(len(fs), -1).astype(np.float32)
    import keras

    head = keras.Model(inputs=net.inputs, outputs=net.layers[-2].output)
    out = np.asarray(head.predict(fs.x, batch_size=256, verbose=0))
    return out.reshape(len(fs), -1).astype(np.float32)


def _tsne(n: int, seed: int, initialization: Any = "pca"):
    from openTSNE import TSNE

    return TSNE(
        n_components=2,
        perplexity=float(max(2.0, min(30.0, (n - 1) / 3.0))),
        initialization=initialization,
        random_state=seed,
        n_jobs=1,
        verbose=False,
    )


def place(embedding: Any, points: np.ndarray) -> np.ndarray:
    """New points placed into a fitted openTSNE map, in the map's stored coordinates.

    openTSNE's ``transform`` (FFT gradients) re-centres the reference map in place on
    its bounding box and returns the placements in that shifted frame; the old points
    keep their stored coordinates, so the placements are shifted back by the same amount.
    """
    before = np.array(embedding, copy=True)
    placed = np.asarray(embedding.transform(points), dtype=float)
    return placed + (before - np.asarray(embedding)).mean(axis=0)


def _initial_from(
    emb: np.ndarray, prior: dict[int, np.ndarray], rows_known: np.ndarray
) -> np.ndarray | None:
    """Previous coordinates for rows that had one; the others at the median of their
    5 nearest known neighbours; scaled as openTSNE recommends (std 1e-4)."""
    if len(prior) < MIN_POINTS:
        return None
    from sklearn.neighbors import NearestNeighbors

    init = np.zeros((len(emb), 2))
    known = np.flatnonzero(rows_known)
    for i in known:
        init[i] = prior[int(i)]
    unknown = np.flatnonzero(~rows_known)
    if len(unknown):
        nn = NearestNeighbors(n_neighbors=min(5, len(known))).fit(emb[known])
        _, idx = nn.kneighbors(emb[unknown])
        init[unknown] = np.median(init[known][idx], axis=1)
    init -= init.mean(axis=0)
    std = init[:, 0].std()
    return init / std * 1e-4 if std > 0 else None


def suggest(
    emb: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS
) -> tuple[np.ndarray, np.ndarray]:
    """(suggested label, confidence) for every row; '' / nan where a row is labeled or
    there are no labeled rows."""
    suggested = np.full(len(emb), "", dtype=object)
    confidence = np.full(len(emb), np.nan)
    labeled = np.flatnonzero(labels != "")
    unlabeled = np.flatnonzero(labels == "")
    if not len(labeled) or not len(unlabeled):
        return suggested, confidence
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(k, len(labeled))).fit(emb[labeled])
    dist, idx = nn.kneighbors(emb[unlabeled])
    weights = 1.0 / (dist + 1e-9)
    for row, d_w, d_i in zip(unlabeled, weights, idx, strict=True):
        votes: dict[str, float] = {}
        for w, j in zip(d_w, d_i, strict=True):
            name = str(labels[labeled[j]])
            votes[name] = votes.get(name, 0.0) + float(w)
        best = max(sorted(votes), key=lambda n: votes[n])
        suggested[row] = best
        confidence[row] = votes[best] / sum(votes.values())
    return suggested, confidence


def map_png(coords: np.ndarray, labels: np.ndarray, is_new: np.ndarray, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    unl = labels == ""
    size = 12 if len(coords) < 2000 else 4
    if unl.any():
        ax.scatter(*coords[unl].T, s=size, c="#b0b0b0", label="(unlabeled)", linewidths=0)
    names = sorted(set(labels[~unl].tolist()))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for i, name in enumerate(names):
        sel = labels == name
        ax.scatter(*coords[sel].T, s=size, color=cmap(i % cmap.N), label=name, linewidths=0)
    if is_new.any():
        ax.scatter(
            *coords[is_new].T, s=size * 4, facecolors="none", edgecolors="black",
            linewidths=0.8, label="new",
        )  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def refresh_explorer(
    project: str,
    *,
    impulse: Impulse | dict[str, Any] | str | None = None,
    seed: int = 0,
    neighbours: int = NEIGHBOURS,
    run: registry.RunKey | None = None,
    catalog: Catalog | None = None,
    blobs=None,
) -> dict[str, Any]:
    """Build or extend the project's explorer map; store the PNG and per-item coordinates
    and suggestions. ``impulse`` is needed only before the project's first training.

    With ``run`` (a pipeline task), a map that task already made is returned instead
    (``reused``): a retried task never adds a second map for one run."""
    from edgeloop.training.train import _context, blob_location

    catalog, blobs = _context(catalog, blobs)
    if run is not None and (done := run_map(catalog, blobs, project, run)) is not None:
        return done
    model = registry.current_model(catalog, project)
    if model is not None:
        imp = parse_impulse(model["impulse"], file=f"{project} model {model['number']}")
        basis = f"model:{model['model_sha']}"
    elif impulse is not None:
        if isinstance(impulse, str):
            imp = load_impulse(impulse)
        elif isinstance(impulse, dict):
            imp = parse_impulse(impulse)
        else:
            imp = impulse
        digest = hashlib.sha256(
            json.dumps([imp.input, imp.processing], sort_keys=True).encode()
        ).hexdigest()
        basis = f"features:{digest[:40]}"
    else:
        raise TrainingError(
            f"project {project!r} has no trained model, so the explorer needs an impulse "
            "to compute features: pass one (`edgeloop explore PROJECT --impulse FILE`) or train "
            f"first (`{registry.TRAIN_COMMAND.format(project=project)}`)"
        )
    all_items = catalog.list_items(project)
    fs = compute_features(imp, all_items, blobs)
    if len(fs) < MIN_POINTS:
        raise TrainingError(
            f"project {project!r}: the explorer needs at least {MIN_POINTS} items the impulse "
            f"can read, found {len(fs)}"
        )
    emb = embeddings(blobs, model, fs)
    keys = [(int(i), int(w)) for i, w in zip(fs.item_ids, fs.windows, strict=True)]

    with catalog.engine.connect() as conn:
        ds = registry.project_id(conn, project)
        prev = registry.latest_map(conn, ds)
        prev_points: dict[tuple[int, int], tuple[float, float]] = {}
        if prev is not None:
            for r in conn.execute(
                sa.select(explorer_points.c.item_id, explorer_points.c.window,
                          explorer_points.c.x, explorer_points.c.y)
                .where(explorer_points.c.map_id == prev["id"])
            ):  # fmt: skip
                prev_points[(r.item_id, r.window)] = (r.x, r.y)
    known = np.asarray([k in prev_points for k in keys], bool)
    coords = np.zeros((len(keys), 2))
    state: dict[str, Any] | None = None
    if prev is not None and prev["basis"] == basis:
        state = pickle.loads(registry.get_bytes(blobs, prev["state_sha"], what="explorer map"))
    n_new = int((~known).sum())
    extend = False
    if state is not None and known.any():
        base = set(state["base_keys"])
        placed_total = sum(1 for k in keys if k not in base)  # placed now or earlier
        extend = placed_total <= len(base)
    if extend:
        coords[known] = [prev_points[k] for k, kn in zip(keys, known, strict=True) if kn]
        if n_new:
            coords[~known] = place(state["embedding"], emb[~known])
        log.info("%s: explorer map extended: %s new point(s) placed", project, n_new)
    else:
        prior = {i: np.asarray(prev_points[k]) for i, k in enumerate(keys) if k in prev_points}
        init = _initial_from(emb, prior, known) if prior else None
        embedding = _tsne(len(emb), seed, init if init is not None else "pca").fit(emb)
        coords = np.asarray(embedding)
        state = {"embedding": embedding, "base_keys": keys}
        log.info("%s: explorer map fitted on %s point(s) (%s)", project, len(keys), basis)
    is_new = ~known if prev is not None else np.zeros(len(keys), bool)

    suggested, confidence = suggest(emb, fs.labels, neighbours)
    title = f"{project}: {len(keys)} points, {n_new if prev is not None else 0} new"
    png_sha = registry.put_bytes(blobs, map_png(coords, fs.labels, is_new, title))
    if extend:
        state_sha = prev["state_sha"]  # the same fitted map, extended by placement
    else:
        state_sha = registry.put_bytes(blobs, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    item_suggestions = _per_item(fs, suggested, confidence)
    stats = {
        "points": len(keys),
        "new": int(is_new.sum()),
        "refit": not extend,
        "labeled": int((fs.labels != "").sum()),
        "unlabeled": int((fs.labels == "").sum()),
        "suggestions": len(item_suggestions),
        "model": model["number"] if model else None,
    }
    with catalog.begin() as conn:
        ds = registry.project_id(conn, project)
        number = registry.next_number(conn, explorer_maps, ds)
        map_id = conn.execute(
            explorer_maps.insert().values(
                dataset_id=ds,
                number=number,
                model_id=model["id"] if model else None,
                basis=basis,
                state_sha=state_sha,
                png_sha=png_sha,
                stats=json.dumps(stats, sort_keys=True),
                created_at=now(),
                **registry.run_values(run),
            )
        ).inserted_primary_key[0]
        conn.execute(
            explorer_points.insert(),
            [
                {
                    "map_id": map_id,
                    "item_id": key[0],
                    "window": key[1],
                    "x": float(coords[i, 0]),
                    "y": float(coords[i, 1]),
                    "label": fs.labels[i] or None,
                    "is_new": bool(is_new[i]),
                    "suggested_label": suggested[i] or None,
                    "confidence": None if np.isnan(confidence[i]) else float(confidence[i]),
                }
                for i, key in enumerate(keys)
            ],
        )
    log.info("%s: explorer map %s: %s", project, number, json.dumps(stats, sort_keys=True))
    return {
        "project": project,
        "map": number,
        "png": blob_location(blobs, png_sha),
        "png_sha": png_sha,
        **stats,
        "reused": False,
    }


def run_map(catalog: Catalog, blobs, project: str, run: registry.RunKey) -> dict[str, Any] | None:
    """The map the pipeline task ``run`` already made, as ``refresh_explorer`` returns it
    with ``reused``; None if it made none."""
    from edgeloop.training.train import blob_location

    row = registry.find_run_record(catalog, explorer_maps, project, run, made="made explorer map")
    if row is None:
        return None
    return {
        "project": project,
        "map": row.number,
        "png": blob_location(blobs, row.png_sha),
        "png_sha": row.png_sha,
        **json.loads(row.stats),
        "reused": True,
    }


def _per_item(
    fs: FeatureSet, suggested: np.ndarray, confidence: np.ndarray
) -> dict[int, tuple[str, float]]:
    """Item id -> (label, confidence): the rows' votes summed (an image item has one row)."""
    votes: dict[int, dict[str, float]] = {}
    counts: dict[int, int] = {}
    for item_id, s, c in zip(fs.item_ids, suggested, confidence, strict=True):
        if s:
            votes.setdefault(int(item_id), {})
            votes[int(item_id)][s] = votes[int(item_id)].get(s, 0.0) + float(c)
            counts[int(item_id)] = counts.get(int(item_id), 0) + 1
    out = {}
    for item_id, v in votes.items():
        best = max(sorted(v), key=lambda n: v[n])
        out[item_id] = (best, v[best] / counts[item_id])
    return out


def explorer_points_of(
    project: str, *, map_number: int | None = None, catalog: Catalog | None = None
) -> list[dict[str, Any]]:
    """The points of the latest (or a given) map: item name, window, x, y, label,
    suggestion, confidence, new."""
    catalog = catalog or Catalog.from_settings()
    with catalog.engine.connect() as conn:
        ds = registry.project_id(conn, project)
        query = sa.select(explorer_maps.c.id).where(explorer_maps.c.dataset_id == ds)
        if map_number is None:
            query = query.order_by(explorer_maps.c.number.desc()).limit(1)
        else:
            query = query.where(explorer_maps.c.number == map_number)
        map_id = conn.execute(query).scalar()
        if map_id is None:
            raise TrainingError(
                f"project {project!r} has no explorer map"
                + (f" {map_number}" if map_number else "")
                + ": run `edgeloop explore PROJECT`"
            )
        rows = conn.execute(
            sa.select(explorer_points, items.c.name)
            .join(items, items.c.id == explorer_points.c.item_id)
            .where(explorer_points.c.map_id == map_id)
            .order_by(items.c.name, explorer_points.c.window)
        ).all()
    return [
        {
            "item": r.name,
            "item_id": r.item_id,
            "window": r.window,
            "x": r.x,
            "y": r.y,
            "label": r.label,
            "new": r.is_new,
            "suggested_label": r.suggested_label,
            "confidence": r.confidence,
        }
        for r in rows
    ]


def accept_suggestions(
    project: str, *, min_confidence: float = 0.9, catalog: Catalog | None = None
) -> dict[str, Any]:
    """Label every still-unlabeled item whose latest suggestion has at least
    ``min_confidence``; an item without a category goes to training."""
    if not 0 <= min_confidence <= 1:
        raise TrainingError(f"--min-confidence must be within 0..1, got {min_confidence!r}")
    catalog = catalog or Catalog.from_settings()
    points = explorer_points_of(project, catalog=catalog)
    votes: dict[int, dict[str, float]] = {}
    counts: dict[int, int] = {}
    for p in points:
        if p["suggested_label"]:
            v = votes.setdefault(p["item_id"], {})
            v[p["suggested_label"]] = v.get(p["suggested_label"], 0.0) + p["confidence"]
            counts[p["item_id"]] = counts.get(p["item_id"], 0) + 1
    chosen: dict[int, str] = {}
    for item_id, v in votes.items():
        best = max(sorted(v), key=lambda n: v[n])
        if v[best] / counts[item_id] >= min_confidence:
            chosen[item_id] = best
    applied: list[str] = []
    ts = now()
    with catalog.begin() as conn:
        for item_id, label in sorted(chosen.items()):
            row = conn.execute(
                sa.select(items.c.name, items.c.label, items.c.category, items.c.deleted_at).where(
                    items.c.id == item_id
                )
            ).first()
            if row is None or row.label is not None or row.deleted_at is not None:
                continue  # labeled (or deleted) since the map was made
            conn.execute(
                items.update()
                .where(items.c.id == item_id)
                .values(
                    label=label,
                    category=row.category or "training",
                    label_pending=False,
                    updated_at=ts,
                )
            )
            applied.append(row.name)
    log.info(
        "%s: applied %s suggestion(s) with confidence >= %s",
        project,
        len(applied),
        min_confidence,
    )
    return {
        "project": project,
        "applied": len(applied),
        "items": applied,
        "min_confidence": min_confidence,
    }
