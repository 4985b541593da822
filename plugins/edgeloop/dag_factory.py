"""Build one Airflow DAG per pipeline config: config file → Pipeline model → tasks.

Each step type maps, through a closed registry (``STEP_BUILDERS``), to a builder
that checks the step and makes its TaskGroup; steps whose builders are not
written yet are refused by name. ``build_files`` never raises: whatever goes
wrong with one file (loading, checking or building its DAG) becomes that file's
errors, and ``edgeloop validate`` reports exactly those. Parse time does no
network I/O and imports no heavy library.
"""

from __future__ import annotations

import copy
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from airflow.sdk import DAG, Asset, Param, TaskGroup
from airflow.sdk.definitions.param import ParamsDict

from edgeloop.config import (
    BlockStep,
    ImportStep,
    Pipeline,
    ProjectActionStep,
    Step,
    config_files,
    errors_of,
    load_pipelines,
)
from edgeloop.errors import ConfigError
from edgeloop.operators.actions import (
    DeployOperator,
    ExplorerOperator,
    PublishDeploymentOperator,
    RetrainOperator,
    VersionOperator,
)
from edgeloop.operators.ingest import LabelOperator, S3SyncOperator, VerifySourceOperator
from edgeloop.operators.notify import NotifyOperator
from edgeloop.operators.run import InvalidConfigOperator, PublishOperator, RunSummaryOperator

log = logging.getLogger(__name__)

START = datetime(2024, 1, 1)
MAX_TAG = 100  # Airflow's limit on a tag's length
RESERVED_IDS = ("summary", "publish", "notify")
PARAMS_DOC = {
    "ignoreLastSuccessfulRun": "Process everything again instead of only what changed since "
    "the last successful run: transformation-block steps run every selected item again.",
}


def project_asset(project: str) -> Asset:
    """The Airflow Asset of a project: a run that changes its items emits an event.

    The ``x-`` scheme is Airflow's convention for custom URIs (no provider normalizes
    it, so building a DAG loads no provider's asset handlers and no boto3)."""
    return Asset(name=f"edgeloop-project-{project}", uri=f"x-edgeloop://project/{project}")


def slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:60]


def group_ids(steps: Iterable[Step]) -> list[str]:
    """One TaskGroup id per step: the slug of its name, made unique."""
    ids: list[str] = []
    for i, step in enumerate(steps):
        base = slug(step.name) or f"step_{i + 1}"
        if base in RESERVED_IDS:
            base += "_step"
        gid, n = base, 2
        while gid in ids:
            gid, n = f"{base}_{n}", n + 1
        ids.append(gid)
    return ids


@dataclass
class StepTasks:
    """What a step builder made: its group, and the task ids the summary reads."""

    group: TaskGroup
    sync_task_ids: list[str] = field(default_factory=list)
    label_task_ids: list[str] = field(default_factory=list)
    # project actions: kind (explorer, retrain, deploy, approval, publish, version) -> task ids
    action_task_ids: dict[str, list[str]] = field(default_factory=dict)
    block_task_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StepBuilder:
    check: Callable[[Pipeline, Step], list[ConfigError]]
    build: Callable[[Pipeline, Step, str, dict], StepTasks] | None


def _no_errors(pipeline: Pipeline, step: Step) -> list[ConfigError]:
    return []


def _build_import(pipeline: Pipeline, step: Step, group_id: str, common: dict) -> StepTasks:
    assert isinstance(step, ImportStep)
    spec = step.source
    source = {
        "scheme": spec.scheme,
        "bucket": spec.bucket,
        "prefix": spec.prefix,
        "project": pipeline.project,
    }
    with TaskGroup(group_id=group_id, tooltip=step.name) as group:
        verify = VerifySourceOperator(
            task_id="verify_source",
            retries=0,  # wrong credentials or path: fail fast
            conn_id=spec.conn_id,
            endpoint=spec.endpoint,
            region=spec.region,
            access_key=spec.access_key,
            secret_key_encrypted=spec.secret_key_encrypted,
            file_types=spec.file_types,
            concurrency=spec.concurrency,
            doc_md=f"Lists one page of `{spec.uri}` ({spec.via}) and fails at once, without "
            "retries, naming the bucket, prefix, credentials and the storage's error code.",
            **source,
            **common,
        )
        sync = S3SyncOperator(
            task_id="sync",
            conn_id=spec.conn_id,
            endpoint=spec.endpoint,
            region=spec.region,
            access_key=spec.access_key,
            secret_key_encrypted=spec.secret_key_encrypted,
            file_types=spec.file_types,
            concurrency=spec.concurrency,
            sync_deletions=step.sync_deletions,
            doc_md=f"Brings project `{pipeline.project}` in line with `{spec.uri}`: lists it, "
            "downloads only new or changed objects (hashed while streaming, checked against "
            "the listing) into the blob store and records them in the catalog. Objects no "
            "longer listed are "
            + ("marked deleted." if step.sync_deletions else "counted as `gone` and kept.")
            + " Returns the counts (listed, new, updated, unchanged, duplicates, skipped, "
            "failed, deleted, gone).",
            **source,
            **common,
        )
        label = LabelOperator(
            task_id="label",
            strategy=step.label_strategy,
            category=step.category,
            doc_md=f"Labels the items of `{spec.uri}` that are new or changed "
            f"(`{step.label_strategy}`) and places them in "
            + (
                "training/testing (80/20 per label, by content hash)."
                if step.category == "split"
                else f"`{step.category}`."
            ),
            **source,
            **common,
        )
        verify >> sync >> label
    return StepTasks(group, [sync.task_id], [label.task_id])


# The tasks of a project-action step, in their order: the map is drawn with the current
# model (extended, not refit), the deployment is of the model retrained in this run, the
# version comes last so it holds this step's deployment; approval/publish branch off the
# build (the version does not wait for a person).
ACTION_TASKS = (
    ("refresh_data_explorer", "explorer"),
    ("retrain_model", "retrain"),
    ("build_binary", "deploy"),
    ("create_version", "version"),
)


def action_task_ids(step: ProjectActionStep) -> list[str]:
    """The task ids (within its group) of a project-action step's actions, in order."""
    asked = {
        "explorer": step.refresh_data_explorer,
        "retrain": step.retrain_model,
        "deploy": step.build_binary is not None,
        "version": step.create_version,
    }
    return [task_id for task_id, kind in ACTION_TASKS if asked[kind]]


def _action_ids_before(pipeline: Pipeline, step: ProjectActionStep) -> tuple[str | None, list]:
    """The retrain task the step's deployment uses (this step's or the latest earlier one)
    and the deploy tasks of the earlier steps (their deployments go into a version)."""
    groups = group_ids(pipeline.steps)
    index = next(i for i, s in enumerate(pipeline.steps) if s is step)
    retrain: str | None = None
    deploys: list[str] = []
    for other, gid in zip(pipeline.steps[: index + 1], groups, strict=False):
        if isinstance(other, ProjectActionStep):
            if other.retrain_model:
                retrain = f"{gid}.retrain_model"
            if other.build_binary is not None and other is not step:
                deploys.append(f"{gid}.build_binary")
    return retrain, deploys


def _build_actions(pipeline: Pipeline, step: Step, group_id: str, common: dict) -> StepTasks:
    """explorer → retrain → build_binary (→ approve_deployment → publish_deployment) →
    version, each task only when the step asks for it."""
    assert isinstance(step, ProjectActionStep)
    from itertools import pairwise

    from airflow.providers.standard.operators.hitl import ApprovalOperator

    project = pipeline.project
    retrain_id, deploy_ids = _action_ids_before(pipeline, step)
    # after a skipped deployment (quality gate) the later actions still run
    args = {"project": project, "trigger_rule": "none_failed", **common}
    ids: dict[str, list[str]] = {}
    with TaskGroup(group_id=group_id, tooltip=step.name) as group:
        chain: list = []
        if step.refresh_data_explorer:
            chain.append(
                ExplorerOperator(
                    task_id="refresh_data_explorer",
                    doc_md=f"Extends project `{project}`'s data explorer map (t-SNE of the "
                    "current model's embeddings; new items placed without moving the old "
                    "ones), writes the PNG, per-item points and label suggestions.",
                    **args,
                )
            )
            ids["explorer"] = [chain[-1].task_id]
        if step.retrain_model:
            chain.append(
                RetrainOperator(
                    task_id="retrain_model",
                    max_drop=step.max_drop,
                    doc_md=f"Retrains project `{project}` with its current model's impulse; "
                    "the new model becomes current only if its test accuracy is at least the "
                    f"current model's (re-evaluated on the same data) minus {step.max_drop} "
                    "(qualityGate.maxDrop). Fails at once if the project was never trained.",
                    **args,
                )
            )
            ids["retrain"] = [chain[-1].task_id]
        deploy = None
        if step.build_binary is not None:
            assert retrain_id is not None  # the loader refuses buildBinary without retrain
            deploy = DeployOperator(
                task_id="build_binary",
                retrain_task_id=retrain_id,
                model_type=step.model_type,
                require_approval=step.require_approval,
                doc_md=f"Builds the verified {step.model_type} C++ library (zip) of the model "
                f"`{retrain_id}` retrained; skipped when that model did not pass the quality "
                "gate. "
                + (
                    "Published after `approve_deployment`."
                    if step.require_approval
                    else "Published as the project's current deployment."
                ),
                **args,
            )
            chain.append(deploy)
            ids["deploy"] = [deploy.task_id]
            deploy_ids.append(f"{group_id}.build_binary")
        if step.create_version:
            chain.append(
                VersionOperator(
                    task_id="create_version",
                    deploy_task_ids=deploy_ids,
                    doc_md=f"Creates an immutable version of project `{project}` (items, "
                    "this config, the current model, the explorer map, this run's "
                    "deployments); once per run.",
                    **args,
                )
            )
            ids["version"] = [chain[-1].task_id]
        for upstream, downstream in pairwise(chain):
            upstream >> downstream
        if deploy is not None and step.require_approval:
            approve = ApprovalOperator(
                task_id="approve_deployment",
                subject=f"Publish the new {step.model_type} deployment of project {project}?",
                body="Deployment {{ ti.xcom_pull(task_ids='" + deploy.task_id + "')"
                "['deployment'] }} of model {{ ti.xcom_pull(task_ids='" + deploy.task_id + "')"
                "['model'] }}: accuracy {{ ti.xcom_pull(task_ids='" + deploy.task_id + "')"
                "['accuracy'] }}, zip {{ ti.xcom_pull(task_ids='" + deploy.task_id + "')"
                "['zip'] }}.\n\nApprove to publish it as the project's current deployment; "
                "reject to keep the current one.",
                retries=0,
                doc_md="Waits for a person (Browse → Required Actions, or the REST API's "
                "hitlDetails) to approve the deployment; a rejection skips the publication.",
            )
            publish = PublishDeploymentOperator(
                task_id="publish_deployment",
                deploy_task_id=deploy.task_id,
                doc_md="Publishes the approved deployment as the project's current one.",
                project=project,
                **common,
            )
            deploy >> approve >> publish
            ids["approval"] = [approve.task_id]
            ids["publish"] = [publish.task_id]
    return StepTasks(group, action_task_ids=ids)


def _check_block(pipeline: Pipeline, step: Step) -> list[ConfigError]:
    """The block exists (include/blocks/, then EDGELOOP_BLOCKS_PATH), its operatesOn fits
    the filter, the filter compiles, the parameters are the block's, extra arguments are
    allowed. No I/O beyond reading the block's parameters.json."""
    assert isinstance(step, BlockStep)
    from edgeloop.blocks.params import load_block_spec, resolve_values
    from edgeloop.catalog.filter import compile_filter
    from edgeloop.transform.blocks import find_block
    from edgeloop.transform.blocks import operates_on as block_operates_on

    file, where = pipeline.source_file, step.where
    try:
        spec = load_block_spec(
            find_block(step.block_id, file=file, path=f"{where}.transformationBlockId")
        )
    except ConfigError as exc:
        return [exc]
    errors: list[ConfigError] = []
    operates_on = block_operates_on(spec)
    if operates_on == "standalone" and step.filter:
        errors.append(
            ConfigError(
                f"block '{step.block_id}' is standalone (it runs once, on no items): drop "
                "the filter",
                file=file,
                path=f"{where}.filter",
            )
        )
    if operates_on != "standalone" and not step.filter:
        errors.append(
            ConfigError(
                f"block '{step.block_id}' operates on each {operates_on}: give a filter "
                "that selects the items",
                file=file,
                path=f"{where}.filter",
                expected="e.g. \"dataset = 'my data'\"",
            )
        )
    if step.filter:
        try:
            compile_filter(step.filter, file=file, path=f"{where}.filter")
        except ConfigError as exc:
            errors.append(exc)
    try:
        resolve_values(spec, dict(step.parameters), environ={})
    except ConfigError as exc:
        if "required parameter has no value" not in str(exc):
            errors.append(
                ConfigError(f"{exc} (block {step.block_id})", file=file, path=f"{where}.parameters")
            )
    if step.extra_cli_arguments.strip() and not spec.allow_extra_cli_arguments:
        errors.append(
            ConfigError(
                f"block '{step.block_id}' does not allow extra CLI arguments "
                "(allowExtraCliArguments is false in its parameters.json)",
                file=file,
                path=f"{where}.extraCliArguments",
                value=step.extra_cli_arguments,
            )
        )
    return errors


def block_slots(step: BlockStep) -> int:
    """How many mapped instances a block step gets: one for a standalone block, else
    ``transformationParallel`` capped by ``[core] max_map_length``. Reads the block's
    parameters.json (checked by ``_check_block`` before)."""
    from edgeloop.blocks.params import load_block_spec
    from edgeloop.transform.blocks import find_block, operates_on
    from edgeloop.transform.plan import max_map_length

    if operates_on(load_block_spec(find_block(step.block_id))) == "standalone":
        return 1
    return max(1, min(step.parallel, max_map_length()))


def _build_block(pipeline: Pipeline, step: Step, group_id: str, common: dict) -> StepTasks:
    """One mapped task, ``run``, over the slots ``range(block_slots(step))``: each slot gets
    the run's plan (the first makes and stores it) and runs its batch of it."""
    assert isinstance(step, BlockStep)
    from edgeloop.operators.blocks import RUN_TASK_ID, BlockSlotOperator
    from edgeloop.transform.blocks import StepSpec

    spec = StepSpec(
        block_id=step.block_id,
        filter=step.filter,
        parameters=step.parameters,
        parallel=step.parallel,
        extra_cli_arguments=step.extra_cli_arguments,
        upload_type=step.upload_type or "dataset",
        output_dataset_name=step.output_dataset_name,
        output_dataset_path_rule=step.output_dataset_path_rule or "subfolder-per-item",
        category=step.category,
        label=step.label,
        aws_conn_id=step.aws_conn_id,
        project=pipeline.project,
    ).to_dict()
    where = (
        f"project `{pipeline.project}`"
        if spec["upload_type"] == "project"
        else f"dataset `{step.output_dataset_name}`"
    )
    slots = block_slots(step)
    selects = f"the units `{step.filter}` selects" if step.filter else "the one standalone run"
    with TaskGroup(group_id=group_id, tooltip=step.name) as group:
        run = BlockSlotOperator.partial(
            task_id=RUN_TASK_ID,
            step=group_id,
            spec=spec,
            slots=slots,
            max_active_tis_per_dagrun=step.parallel,
            map_index_template="slot {{ task.slot }}",
            doc_md=f"Block `{step.block_id}` in {slots} slot(s). The first slot to start "
            f"plans the run: {selects}, leaving out those already done with the same block, "
            "parameters and inputs (unless `ignoreLastSuccessfulRun`), in at most "
            f"{slots} batch(es) stored in the catalog; the other slots read that plan. Each "
            "slot runs its batch (none: it succeeds with zero counts): materializes the "
            f"inputs, runs the block, ingests the outputs into {where} and applies "
            "`ei-metadata.json`; a failing unit is recorded and the slot fails at the end "
            "naming it (clear it to redo only the failed units). Slot 0's result carries the "
            "plan's counts.",
            **common,
        ).expand(slot=list(range(slots)))
    return StepTasks(group, block_task_ids=[run.task_id])


# The closed registry: every step type of the model, and how it becomes tasks.
STEP_BUILDERS: dict[type, StepBuilder] = {
    ImportStep: StepBuilder(check=_no_errors, build=_build_import),
    ProjectActionStep: StepBuilder(check=_no_errors, build=_build_actions),
    BlockStep: StepBuilder(check=_check_block, build=_build_block),
}


def check_steps(pipeline: Pipeline) -> list[ConfigError]:
    """The builders' checks of every step (no Airflow objects made)."""
    errors: list[ConfigError] = []
    for step in pipeline.steps:
        builder = STEP_BUILDERS.get(type(step))
        if builder is None:  # a model class without a builder: a programming error
            errors.append(
                ConfigError(
                    f"step type {type(step).__name__} has no builder",
                    file=pipeline.source_file,
                    path=step.where,
                )
            )
            continue
        errors += builder.check(pipeline, step)
    for i, tag in enumerate(_tags(pipeline)):
        if len(tag) > MAX_TAG:
            errors.append(
                ConfigError(
                    f"tag longer than Airflow's {MAX_TAG} characters",
                    file=pipeline.source_file,
                    path=f"$.tags[{i}]",
                    value=tag[:120],
                )
            )
    return errors


def _tags(pipeline: Pipeline) -> list[str]:
    return list(dict.fromkeys(["edgeloop", f"project:{pipeline.project}", *pipeline.tags]))


def _dag_doc(pipeline: Pipeline) -> str:
    return (
        f"### {pipeline.name}\n\n{pipeline.description}\n\n"
        f"Project `{pipeline.project}`; config `{pipeline.source_file}` "
        f"(sha256 `{pipeline.config_sha256[:12]}`).\n\n"
        "Each step is a task group (verify_source → sync → label for an import step; one "
        "mapped task `run` for a transformation-block step, a slot per batch: the first "
        "slot plans the run, each runs its batch); "
        "`summary` records the run, `publish` emits the project's asset event "
        f"(`edgeloop-project-{pipeline.project}`) when items were created, changed or "
        "deleted. The last summary: `edgeloop summary " + pipeline.id + "`. `notify` "
        "(after everything, whatever happened) sends the run email and the webhook.\n\n"
        + _run_from_code_doc(pipeline)
    )


def _run_from_code_doc(pipeline: Pipeline) -> str:
    """The curl, Python and Node.js samples that trigger this pipeline (no I/O)."""
    from edgeloop.runs.snippets import snippets_markdown

    return (
        f"`edgeloop run {pipeline.id} --wait` triggers a run and follows it; "
        f"`edgeloop stop {pipeline.id}` stops it.\n\n" + snippets_markdown(pipeline.id)
    )


def add_notify(dag: DAG, pipeline: Pipeline, summary_task_id: str) -> NotifyOperator:
    """The ``notify`` task, downstream of every other task of ``dag``.

    It is a teardown task (trigger rule all_done-setup-success, which with no setup
    task is all_done): it runs whatever happened upstream, a run stopped through
    the API still reports, and the run's state is decided by the pipeline's own
    tasks, never by the notification (a failed run stays failed, a receiver that
    is down leaves it green).
    """
    n = pipeline.notifications
    leaves = [t for t in dag.tasks if not t.downstream_list]
    notify = NotifyOperator(
        dag=dag,
        pipeline_id=pipeline.id,
        pipeline_name=pipeline.name,
        project=pipeline.project,
        email_recipients=n.email_recipients,
        when_to_email=n.when_to_email,
        email_conn_id=n.email_conn_id,
        webhook_url=n.webhook_url,
        webhook_conn_id=n.webhook_conn_id,
        organization_id=n.organization_id,
        summary_task_id=summary_task_id,
        doc_md="Works out the run's outcome from the other tasks' states, then sends the run "
        + (
            f"email to {', '.join(n.email_recipients)} (whenToEmail `{n.when_to_email}`, "
            f"connection `{n.email_conn_id}`)"
            if n.email_recipients
            else "email to nobody (no `emailRecipients`)"
        )
        + " and "
        + (
            "the " + ("signed " if n.webhook_conn_id else "") + "webhook"
            if n.webhook_url
            else "no webhook (no `notificationWebhook`)"
        )
        + ". Never fails because a receiver is down: the delivery is recorded in the run "
        "summary (`notifications`).",
    )
    notify.as_teardown()
    for leaf in leaves:
        leaf >> notify
    return notify


def build_dag(pipeline: Pipeline) -> DAG:
    """The DAG of one pipeline: one TaskGroup per step, then summary → publish.

    Raises ConfigError(s) for steps the registry refuses.
    """
    errors = check_steps(pipeline)
    if errors:
        raise errors[0] if len(errors) == 1 else _errors(errors)
    default_args = {
        "owner": pipeline.owner,
        "retries": pipeline.retries,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
    }
    groups = group_ids(pipeline.steps)
    first_task_id = f"{groups[0]}." + (
        "run" if isinstance(pipeline.steps[0], BlockStep) else "verify_source"
    )
    if isinstance(pipeline.steps[0], ProjectActionStep):
        first_task_id = f"{groups[0]}.{action_task_ids(pipeline.steps[0])[0]}"
    common = {
        "pipeline_id": pipeline.id,
        "config_file": pipeline.source_file,
        "config_sha256": pipeline.config_sha256,
        "first_task_id": first_task_id,
    }
    asset = project_asset(pipeline.project)
    with DAG(
        dag_id=pipeline.id,
        dag_display_name=pipeline.name,
        description=(pipeline.description.splitlines() or [pipeline.name])[0][:200],
        doc_md=_dag_doc(pipeline),
        schedule=pipeline.schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        tags=_tags(pipeline),
    ) as dag:
        sync_ids: list[str] = []
        label_ids: list[str] = []
        block_ids: list[str] = []
        action_ids: dict[str, list[str]] = {}
        previous: TaskGroup | None = None
        for step, group_id in zip(pipeline.steps, groups, strict=True):
            built = STEP_BUILDERS[type(step)].build(pipeline, step, group_id, common)
            if previous is not None:
                previous >> built.group
            previous = built.group
            sync_ids += built.sync_task_ids
            label_ids += built.label_task_ids
            block_ids += built.block_task_ids
            for kind, task_ids in built.action_task_ids.items():
                action_ids.setdefault(kind, []).extend(task_ids)
        summary = RunSummaryOperator(
            task_id="summary",
            project=pipeline.project,
            sync_task_ids=sync_ids,
            label_task_ids=label_ids,
            block_task_ids=block_ids,
            action_task_ids=action_ids,
            trigger_rule="none_failed",  # a skipped deployment (quality gate) is reported
            doc_md="Adds up this run's step results, attaches the project's items per label "
            "and category, stores the summary (`edgeloop summary "
            f"{pipeline.id}`) and logs it.",
            **common,
        )
        publish = PublishOperator(
            task_id="publish",
            summary_task_id=summary.task_id,
            outlets=[asset],
            doc_md=f"Emits an event of asset `{asset.name}` with the run's counts when items "
            "were created, changed or deleted; skipped otherwise (no event).",
            **common,
        )
        previous >> summary >> publish
    add_notify(dag, pipeline, summary.task_id)
    # Set once the tasks exist: params given to the DAG's constructor are deep-copied
    # into every operator once per class of its hierarchy and checked against the JSON
    # Schema meta-schema per DAG, together about a quarter of a small DAG's build time.
    # _run_params() was checked once per process; the DAG and each task get their own
    # copy (a run's conf is written into the task's Param objects).
    params = _run_params()
    object.__setattr__(dag, "params", copy.deepcopy(params))
    for task in dag.tasks:
        task.params = copy.deepcopy(params)
    return dag


@cache
def _run_params() -> ParamsDict:
    """The run parameters every pipeline DAG has (shown on the trigger form), validated."""
    params = ParamsDict(
        {
            "ignoreLastSuccessfulRun": Param(
                False, type="boolean", description=PARAMS_DOC["ignoreLastSuccessfulRun"]
            )
        }
    )
    params.validate()
    return params


def _errors(errors: list[ConfigError]) -> ConfigError:
    from edgeloop.config import ConfigErrors

    return ConfigErrors(errors)


@dataclass
class Built:
    """The result of building a set of config files."""

    dags: dict[str, DAG] = field(default_factory=dict)
    dag_of_file: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[ConfigError]] = field(default_factory=dict)


def build_files(paths: Iterable[str | Path], *, invalid_dags: bool = True) -> Built:
    """Build the DAG of every file; each broken file gets its errors (and, if asked, its
    invalid-config DAG). Never raises."""
    built = Built()
    pipelines, built.errors = load_pipelines(list(paths))
    for pipeline in pipelines:
        try:
            dag = build_dag(pipeline)
        except ConfigError as exc:
            built.errors[pipeline.source_file] = errors_of(exc)
        except Exception as exc:  # Airflow refused the DAG: report it like a config error
            built.errors[pipeline.source_file] = [
                ConfigError(
                    f"Airflow refused the DAG: {type(exc).__name__}: {str(exc)[:500]}",
                    file=pipeline.source_file,
                )
            ]
        else:
            built.dags[dag.dag_id] = dag
            built.dag_of_file[pipeline.source_file] = dag.dag_id
    if invalid_dags:
        for file in sorted(built.errors):
            text = "\n".join(str(e) for e in built.errors[file])
            log.error("pipeline config %s is invalid:\n%s", file, text)
            try:
                dag = build_invalid_config_dag(file, text, taken=built.dags.keys())
            except Exception:  # never let the error DAG take the others down
                log.exception("cannot build the invalid-config DAG of %s", file)
                continue
            built.dags[dag.dag_id] = dag
            built.dag_of_file[file] = dag.dag_id
    return built


def build_dags(directory: str | Path | None = None) -> dict[str, DAG]:
    """Every pipeline's DAG; an invalid config becomes an invalid-config DAG, never fatal."""
    if directory is None:
        from edgeloop.settings import get_settings

        directory = get_settings().pipelines_dir
    try:
        files = config_files(directory)
    except OSError as exc:
        log.error("cannot list pipeline configs in %s: %s", directory, exc)
        return {}
    return build_files(files).dags


def check_files(paths: Iterable[str | Path]) -> dict[str, list[ConfigError]]:
    """What ``build_dags`` would turn into invalid-config DAGs, for these files.

    A file is checked together with the other configs of its folder (as the DAG
    file loads them), so an id used twice is reported as the builder would.
    """
    wanted = [Path(p) for p in paths]
    folders: dict[Path, list[Path]] = {}
    for path in wanted:
        folders.setdefault(path.parent, [])
    errors: dict[str, list[ConfigError]] = {}
    for folder in folders:
        try:
            siblings = config_files(folder)
        except OSError:
            siblings = []
        mine = [p for p in wanted if p.parent == folder]
        order = sorted(set(siblings) | set(mine))
        found = build_files(order, invalid_dags=False).errors
        for path in mine:
            if str(path) in found:
                errors[str(path)] = found[str(path)]
    return errors


def build_invalid_config_dag(file: str, error: ConfigError | str, taken=()) -> DAG:
    """A paused, unscheduled DAG that shows an invalid config's errors in the UI.

    Its description and docs carry the errors; its one task fails with them if
    triggered. The other pipelines' DAGs are unaffected.
    """
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(file).stem).lstrip("._-")[:180] or "config"
    dag_id, n = stem, 2
    if dag_id in taken:
        dag_id = f"invalid_{stem}"
    while dag_id in taken:
        dag_id, n = f"invalid_{stem}_{n}", n + 1
    text = str(error)
    with DAG(
        dag_id=dag_id,
        dag_display_name=f"{dag_id} (INVALID CONFIG: see Docs)",
        description=f"INVALID CONFIG: {text.splitlines()[0]}"[:200],
        doc_md=f"### Invalid pipeline config `{file}`\n\n```\n{text}\n```\n\n"
        "Fix the file (check it with `edgeloop validate`); this DAG is replaced by "
        "the pipeline once the config is valid.",
        schedule=None,
        start_date=START,
        catchup=False,
        is_paused_upon_creation=True,
        default_args={"owner": "edgeloop", "retries": 0},
        tags=["edgeloop", "invalid-config"],
    ) as dag:
        InvalidConfigOperator(
            task_id="invalid_config",
            file=file,
            message=text,
            doc_md="Fails with the config's errors; fix the file and this DAG goes away.",
        )
    return dag
