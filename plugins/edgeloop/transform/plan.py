"""Plan a block step's run: select its units, leave out what the ledger says is done,
split the rest into batches stored in the catalog, once per run.

The step is one mapped task (a slot per batch the plan may make, at most
``transformationParallel``); the first slot to arrive makes the plan and stores it with all
its batches in one transaction, the others (and any re-run of a slot) read the stored
plan. The unique constraint on ``block_batches (pipeline_id, run_id, step, batch)``
decides who stores it: every writer inserts the plan row (``batch`` = ``PLAN_ROW``) first
with ``ON CONFLICT DO NOTHING``; on SQLite writers queue on the write lock (``BEGIN
IMMEDIATE``), on PostgreSQL a concurrent insert of the same key waits for the first
transaction and then does nothing, so exactly one plan is stored and the losers read it.

A unit is what the block runs on once: ``operatesOn: directory`` → one selected item,
``file`` → one selected file of an item, ``standalone`` → the one run. A unit is done
when the ledger holds it as ``ok`` with the same block (content hash of its folder),
the same step parameters and the same input file hashes (for a standalone block: the
same listing of its mounted ``s3://`` parameters).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import block_batches, block_ledger
from edgeloop.errors import BlockError
from edgeloop.transform.blocks import StepSpec, block_sha, find_block, operates_on

log = logging.getLogger(__name__)

MAX_MAP_LENGTH = 1024  # Airflow's default [core] max_map_length


def max_map_length() -> int:
    """Airflow's ``[core] max_map_length`` (1024 unless configured)."""
    try:
        from airflow.configuration import conf

        return conf.getint("core", "max_map_length", fallback=MAX_MAP_LENGTH)
    except Exception:  # no Airflow configuration (plain use): its default
        return MAX_MAP_LENGTH


def inputs_sha(files: list[tuple[str, str]]) -> str:
    text = "\n".join(f"{n}\t{s}" for n, s in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def select_units(spec: StepSpec, operates_on: str, catalog: Catalog) -> list[dict[str, Any]]:
    """The units the step's filter selects, each with the hash of its inputs."""
    if operates_on == "standalone":
        from edgeloop.transform.mounts import mounts_sha

        sha = mounts_sha(spec.parameters, spec.aws_conn_id) or inputs_sha([])
        return [{"unit": "standalone", "item_id": None, "name": "(standalone)", "inputs": sha}]
    from edgeloop.catalog.filter import find_items

    rows = find_items(catalog.engine, spec.filter) if spec.filter else []
    units: list[dict[str, Any]] = []
    for item in sorted(rows, key=lambda r: (r["dataset"], r["name"], r["id"])):
        chosen = sorted((f["name"], f["sha256"]) for f in item["files"])
        if operates_on == "directory":
            if not chosen:
                continue
            units.append(
                {
                    "unit": f"item:{item['id']}",
                    "item_id": item["id"],
                    "name": f"{item['dataset']}/{item['name']}",
                    "files": [n for n, _ in chosen],
                    "inputs": inputs_sha(chosen),
                }
            )
        else:
            for name, sha in chosen:
                units.append(
                    {
                        "unit": f"item:{item['id']}:file:{name}",
                        "item_id": item["id"],
                        "name": f"{item['dataset']}/{item['name']}/{name}",
                        "files": [name],
                        "inputs": inputs_sha([(name, sha)]),
                    }
                )
    return units


@dataclass(frozen=True)
class Plan:
    """A run's plan of a step: how many batches, the counts, the hashes the ledger keeps."""

    batches: int
    selected: int
    skipped: int
    todo: int
    block_sha: str = ""
    params_sha: str = ""
    force: bool = False
    stored_here: bool = False  # this call stored it (False: read the one stored before)

    def counts(self) -> dict[str, int]:
        return {
            "selected": self.selected,
            "skipped": self.skipped,
            "todo": self.todo,
            "batches": self.batches,
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                **self.counts(),
                "block_sha": self.block_sha,
                "params_sha": self.params_sha,
                "force": self.force,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        return cls(
            batches=int(raw["batches"]),
            selected=int(raw["selected"]),
            skipped=int(raw["skipped"]),
            todo=int(raw["todo"]),
            block_sha=raw.get("block_sha", ""),
            params_sha=raw.get("params_sha", ""),
            force=bool(raw.get("force", False)),
        )


PLAN_ROW = -1  # the ``batch`` number of the row that holds the plan itself


def _this_step(pipeline_id: str, run_id: str, step: str) -> sa.ColumnElement[bool]:
    bc = block_batches.c
    return (bc.pipeline_id == pipeline_id) & (bc.run_id == run_id) & (bc.step == step)


def stored_plan(catalog: Catalog, *, pipeline_id: str, run_id: str, step: str) -> Plan | None:
    """The plan stored for this run's step, None when no slot has made it yet."""
    bc = block_batches.c
    with catalog.engine.connect() as conn:
        text = conn.execute(
            sa.select(bc.units).where(
                _this_step(pipeline_id, run_id, step) & (bc.batch == PLAN_ROW)
            )
        ).scalar()
    return Plan.from_json(text) if text is not None else None


def make_plan(
    spec: StepSpec,
    *,
    pipeline_id: str,
    step: str,
    force: bool = False,
    catalog: Catalog,
    slots: int,
) -> tuple[Plan, list[list[dict[str, Any]]]]:
    """Select, leave out what is done (unless ``force``), split what is left round-robin
    into at most ``slots`` batches. Reads the catalog, writes nothing."""
    from edgeloop.blocks.params import load_block_spec

    folder = find_block(spec.block_id)
    fan_out = operates_on(load_block_spec(folder))
    block_hash, params_hash = block_sha(folder), spec.params_sha()
    units = select_units(spec, fan_out, catalog)
    lc = block_ledger.c
    with catalog.engine.connect() as conn:
        done = {
            r.unit: r
            for r in conn.execute(
                sa.select(lc.unit, lc.block_sha, lc.params_sha, lc.inputs_sha, lc.status).where(
                    (lc.pipeline_id == pipeline_id) & (lc.step == step)
                )
            )
        }
    todo = []
    for u in units:
        row = done.get(u["unit"])
        same = (
            row is not None
            and row.status == "ok"
            and (row.block_sha, row.params_sha, row.inputs_sha)
            == (block_hash, params_hash, u["inputs"])
        )
        if force or not same:
            todo.append(u)
    n = min(len(todo), max(1, slots))
    groups: list[list[dict[str, Any]]] = [todo[i::n] for i in range(n)]
    plan = Plan(
        batches=n,
        selected=len(units),
        skipped=len(units) - len(todo),
        todo=len(todo),
        block_sha=block_hash,
        params_sha=params_hash,
        force=force,
    )
    return plan, groups


def _store(
    catalog: Catalog,
    plan: Plan,
    groups: list[list[dict[str, Any]]],
    *,
    pipeline_id: str,
    run_id: str,
    step: str,
) -> bool:
    """Store the plan row and its batches in one transaction; False when another slot's
    plan is already there (then nothing is written)."""
    from edgeloop.ingest.sync import _insert

    key = {"pipeline_id": pipeline_id, "run_id": run_id, "step": step}
    with catalog.begin() as conn:
        won = conn.execute(
            _insert(conn, block_batches)
            .values(
                **key,
                batch=PLAN_ROW,
                units=plan.to_json(),
                result=json.dumps({"selected": plan.selected, "skipped": plan.skipped}),
            )
            .on_conflict_do_nothing(index_elements=["pipeline_id", "run_id", "step", "batch"])
        ).rowcount
        if won != 1:
            return False
        if groups:
            conn.execute(
                block_batches.insert(),
                [
                    {
                        **key,
                        "batch": i,
                        "units": json.dumps(
                            {"block_sha": plan.block_sha, "params_sha": plan.params_sha, "units": g}
                        ),
                    }
                    for i, g in enumerate(groups)
                ],
            )
    return True


def plan_step(
    spec: StepSpec,
    *,
    pipeline_id: str,
    run_id: str,
    step: str,
    force: bool = False,
    catalog: Catalog | None = None,
    slots: int | None = None,
) -> Plan:
    """This run's plan of the step: the stored one, or (the first caller) a new one, stored
    with its batches. Safe when the step's slots call it at once (see the module's text).

    ``slots`` is the number of mapped instances (default: ``transformationParallel``, at
    most ``[core] max_map_length``); the plan makes at most that many batches."""
    catalog = catalog or Catalog.from_settings()
    where = {"pipeline_id": pipeline_id, "run_id": run_id, "step": step}
    plan = stored_plan(catalog, **where)
    if plan is None:
        slots = slots or min(max_map_length(), max(1, spec.parallel))
        fresh, groups = make_plan(
            spec, pipeline_id=pipeline_id, step=step, force=force, catalog=catalog, slots=slots
        )
        if _store(catalog, fresh, groups, **where):
            plan = dataclasses.replace(fresh, stored_here=True)
        else:  # another slot stored its plan first: this run runs that one
            plan = stored_plan(catalog, **where)
            if plan is None:  # cannot happen: the conflicting row is committed
                raise BlockError(f"the plan of step {step!r} of run {run_id} vanished")
    log.info(
        "block %s, step %s: %s plan: %d unit(s) selected, %d already done with this block, "
        "parameters and inputs%s, %d to run in %d batch(es)",
        spec.block_id,
        step,
        "made the" if plan.stored_here else "read the stored",
        plan.selected,
        plan.skipped,
        "" if not plan.force else " (ignoreLastSuccessfulRun: none skipped)",
        plan.todo,
        plan.batches,
    )
    return plan
