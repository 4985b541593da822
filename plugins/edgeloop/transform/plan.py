"""Plan a block step's run: select its units, leave out what the ledger says is done,
split the rest into batches stored in the catalog; the mapped tasks take batch ids.

A unit is what the block runs on once: ``operatesOn: directory`` → one selected item,
``file`` → one selected file of an item, ``standalone`` → the one run. A unit is done
when the ledger holds it as ``ok`` with the same block (content hash of its folder),
the same step parameters and the same input file hashes (for a standalone block: the
same listing of its mounted ``s3://`` parameters).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import block_batches, block_ledger
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
    batches: list[int]
    selected: int
    skipped: int
    todo: int

    def counts(self) -> dict[str, int]:
        return {
            "selected": self.selected,
            "skipped": self.skipped,
            "todo": self.todo,
            "batches": len(self.batches),
        }


def plan_step(
    spec: StepSpec,
    *,
    pipeline_id: str,
    run_id: str,
    step: str,
    force: bool = False,
    catalog: Catalog | None = None,
    map_limit: int | None = None,
) -> Plan:
    """Select, leave out what is done (unless ``force``), store the batches of this run
    (re-planning the same run replaces them). Returns the batch ids and counts."""
    from edgeloop.blocks.params import load_block_spec

    catalog = catalog or Catalog.from_settings()
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
    limit = min(map_limit or max_map_length(), max(1, spec.parallel))
    n = min(len(todo), limit)
    groups: list[list[dict[str, Any]]] = [todo[i::n] for i in range(n)]
    with catalog.begin() as conn:
        bc = block_batches.c
        conn.execute(
            block_batches.delete().where(
                (bc.pipeline_id == pipeline_id) & (bc.run_id == run_id) & (bc.step == step)
            )
        )
        if groups:
            conn.execute(
                block_batches.insert(),
                [
                    {
                        "pipeline_id": pipeline_id,
                        "run_id": run_id,
                        "step": step,
                        "batch": i,
                        "units": json.dumps(
                            {"block_sha": block_hash, "params_sha": params_hash, "units": g}
                        ),
                    }
                    for i, g in enumerate(groups)
                ],
            )
    plan = Plan(list(range(n)), len(units), len(units) - len(todo), len(todo))
    log.info(
        "block %s (%s): %d unit(s) selected, %d already done with this block, parameters "
        "and inputs%s, %d to run in %d batch(es)",
        spec.block_id,
        fan_out,
        plan.selected,
        plan.skipped,
        "" if not force else " (ignoreLastSuccessfulRun: none skipped)",
        plan.todo,
        n,
    )
    return plan
