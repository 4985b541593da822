"""The typed pipeline model: a frozen ``Pipeline`` whose steps are one of a closed union.

The loader (``edgeloop.config.loader``) is the only place that reads raw JSON; the
DAG builder sees only these classes. Each step keeps ``where``, its JSON path in
the file, so later checks (the builder's) can name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

from edgeloop.ingest.source import SourceSpec

CATEGORIES = ("training", "testing", "split")
LABEL_STRATEGIES = ("infer-from-folder-name", "infer-from-file-name", "keep-unlabeled")
DEFAULT_MAX_DROP = 0.01  # qualityGate.maxDrop of a retrainModel step


@dataclass(frozen=True)
class ImportStep:
    """builtinTransformationBlock ``s3-to-project``: verify the source, sync it, label."""

    kind: ClassVar[str] = "s3-to-project"

    name: str
    where: str
    source: SourceSpec
    label_strategy: str = "infer-from-folder-name"
    category: str = "split"
    sync_deletions: bool = False


@dataclass(frozen=True)
class ProjectActionStep:
    """builtinTransformationBlock ``project-action`` (explorer, retrain, version, binary)."""

    kind: ClassVar[str] = "project-action"
    # the config's field name of each action, in the order the reference runs them
    ACTIONS: ClassVar[tuple[str, ...]] = (
        "refreshDataExplorer",
        "retrainModel",
        "createVersion",
        "buildBinary",
    )

    name: str
    where: str
    refresh_data_explorer: bool = False
    retrain_model: bool = False
    create_version: bool = False
    build_binary: str | None = None  # "zip"
    build_binary_model_type: str | None = None  # "int8" | "float32"
    # retrainModel: the new model becomes current only if its test accuracy is at least the
    # current model's (re-evaluated on the same testing rows) minus max_drop
    max_drop: float = DEFAULT_MAX_DROP
    # buildBinary: a person approves (Airflow's ApprovalOperator) before the new deployment
    # is published as the project's current one
    require_approval: bool = False

    @property
    def model_type(self) -> str:
        """The deployment's model type (``buildBinaryModelType``, int8 by default)."""
        return self.build_binary_model_type or "int8"

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions this step asks for, by their config names."""
        asked = (
            self.refresh_data_explorer,
            self.retrain_model,
            self.create_version,
            self.build_binary is not None,
        )
        return tuple(a for a, on in zip(self.ACTIONS, asked, strict=True) if on)


@dataclass(frozen=True)
class BlockStep:
    """A custom transformation block (``transformationBlockId``) over filtered items."""

    kind: ClassVar[str] = "transformation-block"

    name: str
    where: str
    block_id: str
    filter: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()  # as the block receives them: strings
    parallel: int = 1
    extra_cli_arguments: str = ""
    upload_type: str | None = None  # "dataset" | "project"
    output_dataset_name: str | None = None
    output_dataset_path_rule: str | None = None
    category: str | None = None
    label: str | None = None
    # the Airflow connection that reads the step's s3:// parameter values (mounted folders)
    aws_conn_id: str = "aws_default"


Step = ImportStep | ProjectActionStep | BlockStep


@dataclass(frozen=True)
class Notifications:
    """Who hears about a run (the ``notify`` task): email and the signed webhook.

    Only connection ids are kept: the SMTP password and the webhook's signing
    secret (the password of ``webhook_conn_id``) are read at run time.
    """

    email_recipients: tuple[str, ...] = ()
    when_to_email: str = "on_new_data"  # always | on_new_data | never
    email_conn_id: str = "smtp_default"
    webhook_url: str | None = None
    webhook_conn_id: str | None = None
    organization_id: str | int | None = None


@dataclass(frozen=True)
class Pipeline:
    """One pipeline config file, validated."""

    id: str
    name: str
    project: str
    steps: tuple[Step, ...]
    source_file: str
    # sha256 of the file's bytes: part of every task, so a DAG version names its config
    config_sha256: str = ""
    description: str = ""
    # a cron expression or preset, a timedelta (intervals no cron expresses), or None
    schedule: str | timedelta | None = "@daily"
    tags: tuple[str, ...] = ()
    owner: str = "edgeloop"
    retries: int = 2
    notifications: Notifications = field(default_factory=Notifications)
