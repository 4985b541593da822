"""The label task: label the new or changed items of one source and place them in
training/testing (plain function ``label_source``)."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import items
from edgeloop.ingest.labeling import infer_label, split

log = logging.getLogger(__name__)

# Labels look like file ids when most labels hold a single item among at least this
# many labeled items (e.g. infer-from-file-name on cat_0001.png, cat_0002.png, ...).
ID_LIKE_MIN_ITEMS = 20
ID_LIKE_SINGLETON_SHARE = 0.5
SHOWN_LABELS = 20


def id_like_labels(per_label: dict[str, int], strategy: str) -> str | None:
    """A warning when the labels look like file ids rather than classes, else None."""
    labeled = sum(per_label.values())
    singletons = sorted(label for label, n in per_label.items() if n == 1)
    if labeled < ID_LIKE_MIN_ITEMS or len(singletons) < ID_LIKE_SINGLETON_SHARE * labeled:
        return None
    examples = ", ".join(singletons[:3])
    return (
        f"{len(singletons)} of {len(per_label)} labels hold a single item ({examples}, ...): "
        f"the labels look like file ids, not classes. {strategy} takes "
        + (
            "the file name's part before the first '.' (name files like cat.0001.png)"
            if strategy == "infer-from-file-name"
            else "the first folder under the source path"
        )
        + "; check the label strategy"
    )


def format_labels(source_uri: str, stats: dict[str, Any], per_label: dict[str, int]) -> list[str]:
    """The label result as lines an operator reads; one line per label, the largest first."""
    lines = [
        f"labeled the new or changed items of {source_uri}: {stats['labeled']} labeled, "
        f"{stats['unlabeled']} unlabeled; {stats['training']} to training, "
        f"{stats['testing']} to testing"
    ]
    if per_label:
        lines.append(f"items per label in this source ({len(per_label)} labels):")
        ranked = sorted(per_label.items(), key=lambda kv: (-kv[1], kv[0]))
        lines += [f"  {label}: {n}" for label, n in ranked[:SHOWN_LABELS]]
        if len(ranked) > SHOWN_LABELS:
            rest = sum(n for _, n in ranked[SHOWN_LABELS:])
            lines.append(f"  ... {len(ranked) - SHOWN_LABELS} more labels with {rest} items")
    lines += [f"warning: {w}" for w in stats["warnings"]]
    return lines


def label_source(
    source_uri: str,
    project: str,
    *,
    strategy: str,
    category: str,
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """Label the items of ``source_uri`` that await a label; place them in a category.

    ``category`` is ``training``, ``testing`` or ``split`` (80/20 per label, by content).
    Returns counts (labeled, unlabeled, training, testing) and ``warnings``.
    """
    catalog = catalog or Catalog.from_settings()
    ic = items.c
    with catalog.begin() as conn:
        dataset_id = catalog.dataset_id(conn, project)
        todo = conn.execute(
            sa.select(ic.id, ic.name, ic.sha256, ic.category).where(
                (ic.dataset_id == dataset_id)
                & (ic.source == source_uri)
                & ic.label_pending
                & ic.deleted_at.is_(None)
            )
        ).all()
        labels: dict[int, str | None] = {}
        categories: dict[int, str] = {}
        to_split: list[tuple[int, str, str | None]] = []
        for row in todo:
            label, fixed = infer_label(row.name, strategy)
            labels[row.id] = label
            if fixed:
                categories[row.id] = fixed
            elif row.category:
                categories[row.id] = row.category
            elif category == "split":
                to_split.append((row.id, row.sha256, label))
            else:
                categories[row.id] = category
        if to_split:
            existing = {
                r.label: (int(r.total), int(r.testing or 0))
                for r in conn.execute(
                    sa.select(
                        ic.label,
                        sa.func.count().label("total"),
                        sa.func.sum(sa.case((ic.category == "testing", 1), else_=0)).label(
                            "testing"
                        ),
                    )
                    .where(
                        (ic.dataset_id == dataset_id)
                        & ic.deleted_at.is_(None)
                        & ic.category.is_not(None)
                    )
                    .group_by(ic.label)
                )
            }
            categories.update(split(to_split, existing))
        if todo:
            conn.execute(
                items.update()
                .where(ic.id == sa.bindparam("item_id"))
                .values(
                    label=sa.bindparam("new_label"),
                    category=sa.bindparam("new_category"),
                    label_pending=False,
                ),
                [
                    {"item_id": i, "new_label": labels[i], "new_category": categories[i]}
                    for i in labels
                ],
            )
        per_label = {
            r.label: int(r.n)
            for r in conn.execute(
                sa.select(ic.label, sa.func.count().label("n"))
                .where(
                    (ic.dataset_id == dataset_id)
                    & (ic.source == source_uri)
                    & ic.deleted_at.is_(None)
                    & ic.label.is_not(None)
                )
                .group_by(ic.label)
            )
        }
    warnings = [w for w in [id_like_labels(per_label, strategy)] if w] if todo else []
    stats: dict[str, Any] = {
        "labeled": sum(1 for v in labels.values() if v is not None),
        "unlabeled": sum(1 for v in labels.values() if v is None),
        "training": sum(1 for v in categories.values() if v == "training"),
        "testing": sum(1 for v in categories.values() if v == "testing"),
        "warnings": warnings,
    }
    for line in format_labels(source_uri, stats, per_label):
        (log.warning if line.startswith("warning:") else log.info)("%s", line)
    return stats
