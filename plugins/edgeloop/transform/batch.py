"""Run a block step's slot: get the run's plan (``edgeloop.transform.plan``), then run the
slot's batch: for each unit, materialize its inputs from the blob store into a scratch
folder, run the block (``run_block``), ingest the outputs, apply ``ei-metadata.json`` and
record the outcome in the ledger, in one transaction per unit. A slot the plan gives no
batch succeeds with zero counts.

One unit's failure does not stop the others: it is recorded with its exit code and last
lines of output; ``run_batch`` raises at the end naming the failed units (a re-run of the
slot redoes only those: the plan is the run's stored one and the others are ``ok`` in the
ledger).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import block_batches, block_changes, block_ledger, datasets, items, now
from edgeloop.errors import BlockError, ConfigError
from edgeloop.storage.blobs import BlobStore
from edgeloop.transform.blocks import StepSpec, find_block
from edgeloop.transform.outputs import (
    Outcome,
    materialize,
    set_metadata,
    stored_outputs,
    upsert_item,
)

log = logging.getLogger(__name__)

COUNT_KEYS = ("ran", "skipped", "failed", "created", "updated", "unchanged", "duplicates")
SHOWN = 10


class BlockStepFailed(BlockError):
    """Some units of a batch failed (the others were ingested)."""


def _item_info(item: dict[str, Any], chosen: list[dict[str, Any]]) -> dict[str, object]:
    created = item["created_at"]
    if isinstance(created, dt.datetime):
        aware = created if created.tzinfo else created.replace(tzinfo=dt.UTC)
        created = aware.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "id": item["id"],
        "name": item["name"],
        "dataset": item["dataset"],
        "bucketName": item.get("bucket_name") or "",
        "bucketPath": item.get("bucket_path") or "",
        "created": str(created),
        "totalFileCount": len(chosen),
        "totalFileSize": sum(int(f["size"]) for f in chosen),
    }


def _load_item(catalog: Catalog, item_id: int) -> dict[str, Any] | None:
    from edgeloop.catalog.filter import find_items

    rows = find_items(catalog.engine, f"id = {int(item_id)}")
    return rows[0] if rows else None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:120] or "item"


def last_successful_run(catalog: Catalog, pipeline_id: str) -> str:
    """ISO-8601 time of the pipeline's last recorded (successful) run, '' if none."""
    last = catalog.last_run(pipeline_id)
    return str(last["finished_at"]) if last else ""


def _dataset_id(conn: sa.Connection, catalog: Catalog, name: str) -> int:
    got = catalog.dataset_id(conn, name)
    assert got is not None  # create=True
    return got


def ingest(
    conn: sa.Connection,
    catalog: Catalog,
    blobs: BlobStore,
    spec: StepSpec,
    out_dir: Path,
    result: Any,  # edgeloop.blocks.runner.BlockResult
    item: dict[str, Any] | None,
) -> Outcome:
    """Put a unit's outputs where the step's upload settings say (see docs/blocks.md)."""
    from edgeloop.blocks.metadata import apply_metadata_update, read_metadata_update

    outcome = Outcome()
    stored = stored_outputs(blobs, out_dir, result.outputs)
    project = spec.upload_type == "project"
    target = spec.project if project else spec.output_dataset_name
    if item is None:  # standalone: each top-level folder an item, each loose file one
        ds = _dataset_id(conn, catalog, target or spec.project)
        groups: dict[str, list] = {}
        for f in stored:
            top, _, rest = f.name.partition("/")
            groups.setdefault(top if rest else "", []).append(f)
        for f in groups.pop("", []):
            outcome.add(
                *upsert_item(
                    conn,
                    ds,
                    f.name,
                    [f],
                    {},
                    label=spec.label,
                    category=spec.category,
                    one_file=True,
                )
            )
        for folder, group in sorted(groups.items()):
            if project:
                for f in group:
                    outcome.add(
                        *upsert_item(
                            conn,
                            ds,
                            f.name,
                            [f],
                            {},
                            label=spec.label,
                            category=spec.category,
                            one_file=True,
                        )
                    )
                continue
            renamed = [type(f)(f.name.partition("/")[2], f.sha256, f.size, f.blob) for f in group]
            existing = conn.execute(
                sa.select(items.c.metadata).where(
                    (items.c.dataset_id == ds)
                    & (items.c.name == folder)
                    & items.c.deleted_at.is_(None)
                )
            ).first()
            current = json.loads(existing.metadata) if existing else {}
            update = read_metadata_update(out_dir / folder)
            meta = apply_metadata_update(current, update) if update else current
            outcome.add(*upsert_item(conn, ds, folder, renamed, meta))
        return outcome

    metadata = dict(result.metadata)
    if not stored:  # a pure check: only the input item's metadata changes
        outcome.add(set_metadata(conn, item["id"], metadata), item["id"])
        return outcome
    if project:
        ds = _dataset_id(conn, catalog, spec.project)
        for f in stored:
            outcome.add(
                *upsert_item(
                    conn,
                    ds,
                    f"{item['name']}/{f.name}",
                    [f],
                    metadata,
                    label=spec.label,
                    category=spec.category,
                    one_file=True,
                )
            )
        return outcome
    if target == item["dataset"]:  # same dataset as source: add to the input item
        outcome.add(*upsert_item(conn, item["dataset_id"], item["name"], stored, metadata))
        return outcome
    ds = _dataset_id(conn, catalog, target or item["dataset"])
    rule = spec.output_dataset_path_rule
    if rule == "no-subfolders":
        for f in stored:
            outcome.add(*upsert_item(conn, ds, f.name, [f], metadata))
        return outcome
    name = item["name"]
    if rule == "use-full-path" and item.get("bucket_path"):
        name = item["bucket_path"]
    outcome.add(*upsert_item(conn, ds, name, stored, metadata))
    return outcome


def _record(
    conn: sa.Connection,
    *,
    pipeline_id: str,
    step: str,
    run_id: str,
    unit: dict[str, Any],
    block_hash: str,
    params_hash: str,
    status: str,
    exit_code: int | None = None,
    tail: str | None = None,
) -> None:
    from edgeloop.ingest.sync import _insert

    stmt = _insert(conn, block_ledger)
    values = {
        "pipeline_id": pipeline_id,
        "step": step,
        "unit": unit["unit"],
        "item_id": unit.get("item_id"),
        "block_sha": block_hash,
        "params_sha": params_hash,
        "inputs_sha": unit["inputs"],
        "status": status,
        "exit_code": exit_code,
        "tail": tail,
        "run_id": run_id,
        "updated_at": now(),
    }
    conn.execute(
        stmt.values(**values).on_conflict_do_update(
            index_elements=["pipeline_id", "step", "unit"],
            set_={k: v for k, v in values.items() if k not in ("pipeline_id", "step", "unit")},
        )
    )


def _changed(conn: sa.Connection, pipeline_id: str, run_id: str, item_ids: set[int]) -> None:
    from edgeloop.ingest.sync import _insert

    if item_ids:
        conn.execute(
            _insert(conn, block_changes).on_conflict_do_nothing(),
            [{"pipeline_id": pipeline_id, "run_id": run_id, "item_id": i} for i in item_ids],
        )


def run_batch(
    spec: StepSpec,
    *,
    pipeline_id: str,
    run_id: str,
    step: str,
    batch: int,
    runtime: str = "local",
    catalog: Catalog | None = None,
    blobs: BlobStore | None = None,
) -> dict[str, int]:
    """Run every unit of one planned batch; return the counts (COUNT_KEYS).

    Raises BlockStepFailed naming the failed units after the others are ingested."""
    from edgeloop.blocks.process import BlockFailed, BlockTimeout
    from edgeloop.blocks.runner import run_block
    from edgeloop.transform.mounts import mount

    catalog = catalog or Catalog.from_settings()
    blobs = blobs or BlobStore.from_settings()
    bc = block_batches.c
    with catalog.engine.connect() as conn:
        row = conn.execute(
            sa.select(bc.units).where(
                (bc.pipeline_id == pipeline_id)
                & (bc.run_id == run_id)
                & (bc.step == step)
                & (bc.batch == batch)
            )
        ).first()
    if row is None:
        raise BlockError(f"no batch {batch} planned for step {step!r} of run {run_id}")
    planned = json.loads(row.units)
    block_hash, params_hash = planned["block_sha"], planned["params_sha"]
    folder = find_block(spec.block_id)
    lc = block_ledger.c
    with catalog.engine.connect() as conn:
        done_now = {
            r.unit
            for r in conn.execute(
                sa.select(lc.unit).where(
                    (lc.pipeline_id == pipeline_id)
                    & (lc.step == step)
                    & (lc.run_id == run_id)
                    & (lc.status == "ok")
                )
            )
        }
    counts = dict.fromkeys(COUNT_KEYS, 0)
    failures: list[str] = []
    last_run = last_successful_run(catalog, pipeline_id)
    extra_args = shlex.split(spec.extra_cli_arguments or "")
    total = len(planned["units"])
    for n, unit in enumerate(planned["units"], 1):
        if unit["unit"] in done_now:  # a retry of this batch: done by the previous try
            counts["skipped"] += 1
            continue
        item = None
        with tempfile.TemporaryDirectory(prefix="edgeloop-block-") as tmp:
            scratch = Path(tmp)
            kwargs: dict[str, Any] = {}
            try:
                params = mount(dict(spec.parameters), scratch, spec.aws_conn_id)
                if unit["item_id"] is not None:
                    item = _load_item(catalog, unit["item_id"])
                    if item is None:
                        raise ConfigError(f"item {unit['name']} is gone (deleted since planned)")
                    chosen = [f for f in item["files"] if f["name"] in set(unit["files"])]
                    if "file:" in unit["unit"]:
                        if not chosen:
                            raise ConfigError(f"file {unit['name']} is gone since planned")
                        in_file = scratch / "in" / Path(chosen[0]["name"]).name
                        materialize(blobs, chosen[0]["sha256"], in_file)
                        kwargs["in_file"] = in_file
                    else:
                        in_dir = scratch / "in" / _safe(item["name"])
                        in_dir.mkdir(parents=True)
                        for f in chosen:
                            materialize(blobs, f["sha256"], in_dir / f["name"])
                        kwargs["in_directory"] = in_dir
                    kwargs["metadata"] = item["metadata"]
                    kwargs["item_info"] = _item_info(item, chosen)
                out_dir = scratch / "out"
                result = run_block(
                    folder,
                    out_directory=out_dir,
                    params=params,
                    extra_args=extra_args,
                    runtime=runtime,
                    env={"EI_LAST_SUCCESSFUL_RUN": last_run},
                    **kwargs,
                )
                with catalog.begin() as conn:
                    outcome = ingest(conn, catalog, blobs, spec, out_dir, result, item)
                    _changed(conn, pipeline_id, run_id, outcome.items)
                    _record(
                        conn,
                        pipeline_id=pipeline_id,
                        step=step,
                        run_id=run_id,
                        unit=unit,
                        block_hash=block_hash,
                        params_hash=params_hash,
                        status="ok",
                        exit_code=0,
                    )
            except (BlockFailed, BlockTimeout, BlockError, ConfigError, OSError) as exc:
                exit_code = getattr(exc, "exit_code", None)
                tail = list(getattr(exc, "tail", ()) or str(exc).splitlines())[-20:]
                with catalog.begin() as conn:
                    _record(
                        conn,
                        pipeline_id=pipeline_id,
                        step=step,
                        run_id=run_id,
                        unit=unit,
                        block_hash=block_hash,
                        params_hash=params_hash,
                        status="failed",
                        exit_code=exit_code,
                        tail="\n".join(tail),
                    )
                counts["failed"] += 1
                code = f"exit code {exit_code}" if exit_code is not None else type(exc).__name__
                failures.append(f"{unit['name']} ({code}): {tail[-1] if tail else ''}")
                log.error(
                    "unit %s failed (%s); last lines:\n%s", unit["name"], code, "\n".join(tail)
                )
                continue
        counts["ran"] += 1
        for key in ("created", "updated", "unchanged", "duplicates"):
            counts[key] += getattr(outcome, key)
        log.info(
            "progress: %d/%d unit(s) of batch %d; %s: created %d, updated %d, unchanged %d",
            n,
            total,
            batch,
            unit["name"],
            outcome.created,
            outcome.updated,
            outcome.unchanged,
        )
    with catalog.begin() as conn:
        conn.execute(
            block_batches.update()
            .where(
                (bc.pipeline_id == pipeline_id)
                & (bc.run_id == run_id)
                & (bc.step == step)
                & (bc.batch == batch)
            )
            .values(result=json.dumps(counts))
        )
    if failures:
        shown = "; ".join(failures[:SHOWN])
        more = f" (and {len(failures) - SHOWN} more)" if len(failures) > SHOWN else ""
        raise BlockStepFailed(
            f"block {spec.block_id}: {len(failures)} of {total} unit(s) failed (the others are "
            f"ingested; a re-run redoes only the failed ones): {shown}{more}"
        )
    return counts


def run_slot(
    spec: StepSpec,
    *,
    pipeline_id: str,
    run_id: str,
    step: str,
    slot: int,
    slots: int,
    force: bool = False,
    runtime: str = "local",
    catalog: Catalog | None = None,
    blobs: BlobStore | None = None,
) -> dict[str, int]:
    """One mapped instance of a block step: get this run's plan (the first slot makes and
    stores it, see ``edgeloop.transform.plan``), then run batch ``slot`` if the plan has
    it. Returns the counts (COUNT_KEYS); slot 0 also carries the plan's ``selected`` and
    the units the plan left out as done in ``skipped``, so that the step's counts are the
    sum over its slots. Raises BlockStepFailed as ``run_batch`` does."""
    from edgeloop.transform.plan import plan_step

    catalog = catalog or Catalog.from_settings()
    plan = plan_step(
        spec,
        pipeline_id=pipeline_id,
        run_id=run_id,
        step=step,
        force=force,
        catalog=catalog,
        slots=slots,
    )
    if slot < plan.batches:
        counts = run_batch(
            spec,
            pipeline_id=pipeline_id,
            run_id=run_id,
            step=step,
            batch=slot,
            runtime=runtime,
            catalog=catalog,
            blobs=blobs,
        )
    else:
        counts = dict.fromkeys(COUNT_KEYS, 0)
        log.info(
            "slot %d: no batch to run (the plan has %d batch(es) for %d unit(s) to run)",
            slot,
            plan.batches,
            plan.todo,
        )
    if slot == 0:
        counts["selected"] = plan.selected
        counts["skipped"] += plan.skipped
    return counts


def checklist_counts(catalog: Catalog, pipeline_id: str, run_id: str) -> dict[str, int]:
    """``{"ok": N, "fail": N}`` over the items this run's block steps created or changed
    that carry an ``ei_check``."""
    out = {"ok": 0, "fail": 0}
    with catalog.engine.connect() as conn:
        rows = conn.execute(
            sa.select(items.c.metadata)
            .join(block_changes, block_changes.c.item_id == items.c.id)
            .join(datasets, datasets.c.id == items.c.dataset_id)
            .where(
                (block_changes.c.pipeline_id == pipeline_id)
                & (block_changes.c.run_id == run_id)
                & items.c.deleted_at.is_(None)
            )
        )
        for (meta,) in rows:
            check = json.loads(meta or "{}").get("ei_check")
            if check is None:
                continue
            out["ok" if str(check) == "1" else "fail"] += 1
    return out
