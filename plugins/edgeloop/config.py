"""Pipeline configs: load JSON → validate with the schema → frozen typed model.

The DAG builder only ever sees the model (``Pipeline``), never raw dicts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from edgeloop.errors import ConfigError
from edgeloop.schemas import load_schema

DEFAULT_FILE_TYPES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".wav",
    ".csv",
    ".json",
    ".cbor",
    ".txt",
    ".parquet",
    ".npy",
    ".mp4",
    ".avi",
)
# Actions of the reference platform that no issue has built yet: a config that
# asks for one is refused with its name instead of silently doing nothing.
NOT_BUILT_ACTIONS = ("refreshDataExplorer", "retrainModel", "createVersion", "buildBinary")
NOT_BUILT_PIPELINE_FIELDS = ("emailRecipientUids", "whenToEmail", "notificationWebhook")
PLAINTEXT_SECRET_FIELDS = ("secretKey", "secretAccessKey")
_INTERVAL = re.compile(r"^([1-9][0-9]*)([mhd])$")
_INTERVAL_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class S3ImportStep:
    """builtinTransformationBlock ``s3-to-project``: sync a bucket prefix, then label."""

    name: str
    bucket: str
    prefix: str
    label_strategy: str = "infer-from-folder-name"
    category: str = "split"
    endpoint: str | None = None
    region: str | None = None
    aws_conn_id: str = "aws_default"
    access_key: str | None = None
    secret_key_encrypted: str | None = field(default=None, repr=False)
    sync_deletions: bool = False
    file_types: tuple[str, ...] = DEFAULT_FILE_TYPES
    concurrency: int = 16

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class Pipeline:
    id: str
    name: str
    project: str
    steps: tuple[S3ImportStep, ...]
    source_file: str
    description: str = ""
    schedule: str | timedelta = "@daily"
    tags: tuple[str, ...] = ()
    owner: str = "edgeloop"
    retries: int = 2


@cache
def _validator(definition: str):  # -> jsonschema validator for one $defs entry
    from jsonschema import Draft202012Validator

    schema = load_schema("pipeline.schema.json")
    return Draft202012Validator({"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"})


def _expected(error) -> str:  # error: jsonschema.ValidationError
    v, val = error.validator, error.validator_value
    return {
        "enum": f"one of {val}",
        "const": f"{val!r}",
        "type": f"type {val}",
        "pattern": f"a string matching {val}",
        "minLength": f"at least {val} character(s)",
        "minItems": f"at least {val} item(s)",
        "minimum": f"a number >= {val}",
        "maximum": f"a number <= {val}",
    }.get(v, f"{v} {val}")


def schema_errors(doc: Any, file: str) -> list[ConfigError]:
    """Every schema violation of one config document, in document order."""
    if isinstance(doc, list):
        validator = _validator("steps")
    elif isinstance(doc, dict):
        validator = _validator("pipeline")
    else:
        return [
            ConfigError(
                "a config is a pipeline object or a list of steps",
                file=file,
                path="$",
                expected="object or array",
                value=doc,
            )
        ]
    errors = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator in ("required", "additionalProperties"):
            errors.append(ConfigError(err.message, file=file, path=err.json_path))
        else:
            errors.append(
                ConfigError(
                    "invalid value",
                    file=file,
                    path=err.json_path,
                    expected=_expected(err),
                    value=err.instance,
                )
            )
    return errors


def _semantic_errors(doc: Any, file: str) -> list[ConfigError]:
    """Rules the schema cannot phrase well: plaintext secrets, actions not built yet."""
    errors = []
    steps = doc if isinstance(doc, list) else doc.get("steps", []) if isinstance(doc, dict) else []
    base = "$" if isinstance(doc, list) else "$.steps"
    if not isinstance(steps, list):
        return []
    if isinstance(doc, dict):
        for key in NOT_BUILT_PIPELINE_FIELDS:
            if key in doc:
                errors.append(
                    ConfigError(
                        f"'{key}' is not supported yet (notifications are not built)",
                        file=file,
                        path=f"$.{key}",
                    )
                )
    for i, step in enumerate(steps):
        where = f"{base}[{i}]"
        if not isinstance(step, dict):
            continue
        if "transformationBlockId" in step:
            errors.append(
                ConfigError(
                    "custom transformation block steps are not supported yet in pipelines",
                    file=file,
                    path=f"{where}.transformationBlockId",
                )
            )
        block = step.get("builtinTransformationBlock")
        if not isinstance(block, dict):
            if "transformationBlockId" not in step:
                errors.append(
                    ConfigError(
                        "a step needs 'builtinTransformationBlock' or 'transformationBlockId'",
                        file=file,
                        path=where,
                    )
                )
            continue
        for key in PLAINTEXT_SECRET_FIELDS:
            if key in block:
                errors.append(
                    ConfigError(
                        "plaintext secrets are not accepted in a config; use 'awsConnId' (an Airflow "
                        "connection) or 'secretKeyEncrypted' (made by `edgeloop encrypt-secret`)",
                        file=file,
                        path=f"{where}.builtinTransformationBlock.{key}",
                    )
                )
        if block.get("type") == "s3-to-project":
            if bool(block.get("accessKey")) != bool(block.get("secretKeyEncrypted")):
                errors.append(
                    ConfigError(
                        "'accessKey' and 'secretKeyEncrypted' go together",
                        file=file,
                        path=f"{where}.builtinTransformationBlock",
                    )
                )
        elif block.get("type") == "project-action":
            for action in NOT_BUILT_ACTIONS:
                if block.get(action):
                    errors.append(
                        ConfigError(
                            f"project action '{action}' is not built yet; supported steps: "
                            "s3-to-project",
                            file=file,
                            path=f"{where}.builtinTransformationBlock.{action}",
                        )
                    )
    return errors


def parse_schedule(schedule: str | None, interval: str | None, file: str) -> str | timedelta:
    if interval:
        m = _INTERVAL.match(interval)
        if not m:
            raise ConfigError(
                "invalid interval",
                file=file,
                path="$.intervalStr",
                expected='"<n>m", "<n>h" or "<n>d"',
                value=interval,
            )
        return timedelta(**{_INTERVAL_UNITS[m.group(2)]: int(m.group(1))})
    if not schedule:
        return "@daily"
    if schedule.startswith("@"):
        return schedule
    from croniter import croniter

    if not croniter.is_valid(schedule):
        raise ConfigError(
            "invalid schedule",
            file=file,
            path="$.schedule",
            expected="a cron expression or a preset like @daily",
            value=schedule,
        )
    return schedule


def _step(raw: dict[str, Any]) -> S3ImportStep:
    block = raw["builtinTransformationBlock"]
    bucket, _, prefix = block["path"][len("s3://") :].partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3ImportStep(
        name=raw["name"],
        bucket=bucket,
        prefix=prefix,
        label_strategy=block.get("labelStrategy", "infer-from-folder-name"),
        category=block.get("category", "split"),
        endpoint=block.get("endpoint"),
        region=block.get("region"),
        aws_conn_id=block.get("awsConnId", "aws_default"),
        access_key=block.get("accessKey"),
        secret_key_encrypted=block.get("secretKeyEncrypted"),
        sync_deletions=block.get("syncDeletions", False),
        file_types=tuple(t.lower() for t in block.get("fileTypes", DEFAULT_FILE_TYPES)),
        concurrency=block.get("concurrency", 16),
    )


class ConfigErrors(ConfigError):
    """Several errors of one config file, raised together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def check_pipeline(path: str | Path) -> list[ConfigError]:
    """All errors of one config file (empty when it is valid)."""
    try:
        load_pipeline(path)
    except ConfigErrors as exc:
        return exc.errors
    except ConfigError as exc:
        return [exc]
    return []


def load_pipeline(path: str | Path) -> Pipeline:
    """Load and validate one config file; raise ConfigError naming every problem."""
    path = Path(path)
    file = str(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("no such file", file=file) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"not valid JSON: {exc}", file=file) from exc
    errors = schema_errors(doc, file) + _semantic_errors(doc, file)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    meta: dict[str, Any] = {} if isinstance(doc, list) else doc
    raw_steps = doc if isinstance(doc, list) else doc["steps"]
    pipeline_id = meta.get("id", path.stem)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", pipeline_id):
        raise ConfigError(
            "the file name cannot serve as a pipeline id; set 'id'",
            file=file,
            path="$.id",
            expected="letters, digits, '_', '.', '-'",
            value=pipeline_id,
        )
    return Pipeline(
        id=pipeline_id,
        name=meta.get("name", pipeline_id),
        project=meta.get("project", pipeline_id),
        description=meta.get("description", ""),
        schedule=parse_schedule(meta.get("schedule"), meta.get("intervalStr"), file),
        tags=tuple(meta.get("tags", ())),
        owner=meta.get("owner", "edgeloop"),
        retries=meta.get("retries", 2),
        steps=tuple(_step(s) for s in raw_steps if "builtinTransformationBlock" in s),
        source_file=file,
    )


def config_files(directory: str | Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob("*.json") if p.is_file())


def load_pipelines(directory: str | Path) -> tuple[list[Pipeline], dict[str, ConfigError]]:
    """Every valid pipeline of a folder, and the error of each invalid file."""
    pipelines: list[Pipeline] = []
    errors: dict[str, ConfigError] = {}
    seen: dict[str, str] = {}
    for path in config_files(directory):
        try:
            pipeline = load_pipeline(path)
        except ConfigError as exc:
            errors[str(path)] = exc
            continue
        if pipeline.id in seen:
            errors[str(path)] = ConfigError(
                f"pipeline id '{pipeline.id}' is already used by {seen[pipeline.id]}",
                file=str(path),
                path="$.id",
            )
            continue
        seen[pipeline.id] = str(path)
        pipelines.append(pipeline)
    return pipelines, errors
