"""Pipeline configs: JSON → checks → the frozen model (``edgeloop.config.model``).

``load_pipeline`` raises ``ConfigError`` (or ``ConfigErrors``) for anything wrong
with a file, whatever the cause: an unexpected exception while loading one file
is turned into a ``ConfigError`` naming it, so a broken config can never take the
other pipelines down. Every error names the file and the JSON path.
"""

from __future__ import annotations

import hashlib
import json
import re
import reprlib
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeloop.config.model import (
    DEFAULT_MAX_DROP,
    BlockStep,
    ImportStep,
    Notifications,
    Pipeline,
    ProjectActionStep,
    Step,
)
from edgeloop.config.schedule import parse_schedule
from edgeloop.errors import ConfigError
from edgeloop.ingest.source import DEFAULT_FILE_TYPES, SourceSpec
from edgeloop.schemas import load_schema

MAX_FILE_BYTES = 1 << 20
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
MAX_PROJECT = 92  # the DAG tag "project:<project>" fits Airflow's 100 characters
PLAINTEXT_SECRET_FIELDS = ("secretKey", "secretAccessKey")
# Pipeline fields of the reference format that later issues build: refused by name.
NOT_BUILT_PIPELINE_FIELDS = {
    "emailRecipientUids": "the reference platform's user ids are not used; list the "
    "addresses in 'emailRecipients'",
    "projectId": "the reference platform's numeric project id is not used; "
    "name the project with 'project'",
    "dataset": "a pipeline-level dataset is not used; block steps name "
    "their datasets themselves (outputDatasetName, the filter)",
}
# Step-level fields that belong to custom transformation-block steps only.
BLOCK_STEP_FIELDS = (
    "filter",
    "category",
    "label",
    "parameters",
    "transformationParallel",
    "extraCliArguments",
    "uploadType",
    "outputDatasetName",
    "outputDatasetPathRule",
    "awsConnId",
)
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 120
_short.maxlevel = 3


class ConfigErrors(ConfigError):
    """Several errors of one config file, raised together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
        self.file = errors[0].file


def errors_of(exc: ConfigError) -> list[ConfigError]:
    return list(exc.errors) if isinstance(exc, ConfigErrors) else [exc]


def _raise(errors: list[ConfigError]) -> None:
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)


class _Shown(str):
    """Text shown as is in an error's "got ..." (already a repr)."""

    def __repr__(self) -> str:
        return str(self)


def _value(value: Any) -> Any:
    """A value as it may appear in an error: small, credentials masked."""
    if isinstance(value, str):
        value = _mask_userinfo(value)
        return value if len(value) <= 200 else value[:200] + "..."
    if isinstance(value, (dict, list)):
        return _Shown(_short.repr(value))
    return value


def _mask_userinfo(text: str) -> str:
    return re.sub(r"(://)[^/\s@]*@", r"\1***@", text)


def jpath(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{base}.{key}"
    return f"{base}[{json.dumps(key)}]"


# ---------------------------------------------------------------- JSON


class _Object(dict):
    """A JSON object that remembers the keys it saw twice."""

    duplicates: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


def _walk(doc: Any) -> Iterator[tuple[str, Any]]:
    """(JSON path, value) of every node, iteratively (deep documents do not recurse)."""
    stack = [("$", doc)]
    while stack:
        where, node = stack.pop()
        yield where, node
        if isinstance(node, dict):
            stack.extend((jpath(where, k), v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((jpath(where, i), v) for i, v in reversed(list(enumerate(node))))


def parse_json(data: bytes, file: str) -> Any:
    """The document of a config file; duplicate keys, NaN and deep nesting are errors."""

    def constant(name: str) -> Any:
        raise ConfigError(f"not valid JSON: {name} is not a JSON number", file=file)

    try:
        text = data.decode("utf-8-sig")
        doc = json.loads(text, object_pairs_hook=_pairs, parse_constant=constant)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc}", file=file) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc}", file=file) from exc
    except RecursionError as exc:
        raise ConfigError("not a config: nested too deeply", file=file, path="$") from exc
    errors = [
        ConfigError(
            f"duplicate key {key!r} (JSON keys must be unique)", file=file, path=jpath(where, key)
        )
        for where, node in _walk(doc)
        if isinstance(node, _Object)
        for key in dict.fromkeys(node.duplicates)
    ]
    _raise(errors)
    return doc


# ---------------------------------------------------------------- schema


@cache
def _validator(definition: str):  # -> jsonschema validator for one $defs entry
    from jsonschema import Draft202012Validator, validators

    # JSON Schema's "integer" takes 4.0; a config must write 4 (and true is no integer).
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, v: isinstance(v, int) and not isinstance(v, bool)
    )
    strict = validators.extend(Draft202012Validator, type_checker=checker)
    schema = load_schema("pipeline.schema.json")
    return strict({"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"})


def _expected(error) -> str:  # error: jsonschema.ValidationError
    v, val = error.validator, error.validator_value
    return {
        "enum": f"one of {val}",
        "const": f"{val!r}",
        "type": f"type {val}",
        "pattern": f"a string matching {val}",
        "minLength": f"at least {val} character(s)",
        "maxLength": f"at most {val} character(s)",
        "minItems": f"at least {val} item(s)",
        "maxItems": f"at most {val} item(s)",
        "minimum": f"a number >= {val}",
        "maximum": f"a number <= {val}",
    }.get(v, f"{v} {val}")


@cache
def _fast_validator(definition: str):  # -> jsonschema_rs validator for one $defs entry
    import jsonschema_rs

    schema = load_schema("pipeline.schema.json")
    return jsonschema_rs.validator_for(
        {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    )


def _integral_float(doc: Any) -> bool:
    """Whether the document holds a number like 4.0 (which only the strict check refuses)."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, float) and node.is_integer():
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def schema_errors(doc: Any, file: str) -> list[ConfigError]:
    """Every schema violation of one config document, in document order.

    A valid document is recognised by jsonschema-rs (compiled, ~50x faster than the
    Python validator, a fifth of a large folder's parse time); anything it refuses, or
    a document with an integral float (4.0, an integer to JSON Schema but not to us),
    goes through the Python validator, which names every error and is the reference.
    """
    if isinstance(doc, list):
        definition = "steps"
    elif isinstance(doc, dict):
        definition = "pipeline"
    else:
        return [
            ConfigError(
                "a config is a pipeline object or a list of steps",
                file=file,
                path="$",
                expected="object or array",
                value=_value(doc),
            )
        ]
    if _fast_validator(definition).is_valid(doc) and not _integral_float(doc):
        return []
    errors = []
    validator = _validator(definition)
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
                    value=_value(err.instance),
                )
            )
    return errors


# ---------------------------------------------------------------- rules beyond the schema


def _pipeline_errors(doc: dict, file: str) -> list[ConfigError]:
    errors = [
        ConfigError(f"'{key}' is not supported: {why}", file=file, path=f"$.{key}")
        for key, why in NOT_BUILT_PIPELINE_FIELDS.items()
        if key in doc
    ]
    if "webhookConnId" in doc and "notificationWebhook" not in doc:
        errors.append(
            ConfigError(
                "'webhookConnId' (the signing secret) goes with 'notificationWebhook'",
                file=file,
                path="$.webhookConnId",
            )
        )
    webhook = doc.get("notificationWebhook")
    if isinstance(webhook, str) and _has_userinfo(webhook):
        errors.append(
            ConfigError(
                "credentials do not belong in 'notificationWebhook' (it is shown in the UI); "
                "sign the requests with 'webhookConnId' instead",
                file=file,
                path="$.notificationWebhook",
                expected="http(s)://host[:port][/path]",
                value=_mask_userinfo(webhook),
            )
        )
    if "schedule" in doc and "intervalStr" in doc:
        errors.append(
            ConfigError(
                "give either 'schedule' or 'intervalStr', not both",
                file=file,
                path="$.schedule",
            )
        )
    return errors


def _step_errors(step: dict, where: str, file: str) -> list[ConfigError]:
    errors: list[ConfigError] = []
    block = step.get("builtinTransformationBlock")
    if "transformationBlockId" in step:
        if block is not None:
            errors.append(
                ConfigError(
                    "a step is either a builtinTransformationBlock or a transformationBlockId, "
                    "not both",
                    file=file,
                    path=f"{where}.transformationBlockId",
                )
            )
        return errors + _block_step_errors(step, where, file)
    if not isinstance(block, dict):
        return [
            ConfigError(
                "a step needs 'builtinTransformationBlock' or 'transformationBlockId'",
                file=file,
                path=where,
            )
        ]
    for key in BLOCK_STEP_FIELDS:
        if key in step:
            hint = (
                "; an import step's category goes in builtinTransformationBlock.category"
                if key == "category" and block.get("type") == "s3-to-project"
                else ""
            )
            errors.append(
                ConfigError(
                    f"'{key}' applies to transformation-block steps only, not to a "
                    f"'{block.get('type')}' step{hint}",
                    file=file,
                    path=f"{where}.{key}",
                )
            )
    bwhere = f"{where}.builtinTransformationBlock"
    if block.get("type") == "s3-to-project":
        for key in PLAINTEXT_SECRET_FIELDS:
            if key in block:
                errors.append(
                    ConfigError(
                        "plaintext secrets are not accepted in a config; use 'awsConnId' (an "
                        "Airflow connection) or 'secretKeyEncrypted' (made by "
                        "`edgeloop encrypt-secret`)",
                        file=file,
                        path=f"{bwhere}.{key}",
                    )
                )
        if bool(block.get("accessKey")) != bool(block.get("secretKeyEncrypted")):
            errors.append(
                ConfigError(
                    "'accessKey' and 'secretKeyEncrypted' go together", file=file, path=bwhere
                )
            )
        endpoint = block.get("endpoint")
        if isinstance(endpoint, str) and _has_userinfo(endpoint):
            errors.append(
                ConfigError(
                    "credentials do not belong in 'endpoint'; use 'awsConnId' or "
                    "'accessKey' + 'secretKeyEncrypted'",
                    file=file,
                    path=f"{bwhere}.endpoint",
                    expected="http(s)://host[:port][/path]",
                    value=_mask_userinfo(endpoint),
                )
            )
    elif block.get("type") == "project-action":
        asked = [a for a in ProjectActionStep.ACTIONS if block.get(a)]
        if not asked:
            errors.append(
                ConfigError(
                    "a project-action step asks for no action",
                    file=file,
                    path=bwhere,
                    expected=f"one of {list(ProjectActionStep.ACTIONS)} set",
                    value=_value(dict(block)),
                )
            )
        if "buildBinaryModelType" in block and "buildBinary" not in block:
            errors.append(
                ConfigError(
                    "'buildBinaryModelType' goes with 'buildBinary'",
                    file=file,
                    path=f"{bwhere}.buildBinaryModelType",
                )
            )
        for key, goes_with in (("qualityGate", "retrainModel"), ("requireApproval", "buildBinary")):
            if key in block and not block.get(goes_with):
                errors.append(
                    ConfigError(
                        f"'{key}' goes with '{goes_with}' (in the same step)",
                        file=file,
                        path=f"{bwhere}.{key}",
                    )
                )
    return errors


def _action_order_errors(steps: list[Any], base: str, file: str) -> list[ConfigError]:
    """buildBinary deploys the model retrained in this run: a retrainModel action must come
    in the same step or an earlier one (the seed: "Requires 'Retrain model' to also be
    enabled")."""
    errors: list[ConfigError] = []
    retrained = False
    for i, step in enumerate(steps):
        block = step.get("builtinTransformationBlock") if isinstance(step, dict) else None
        if not isinstance(block, dict) or block.get("type") != "project-action":
            continue
        retrained = retrained or block.get("retrainModel") is True
        if "buildBinary" in block and not retrained:
            errors.append(
                ConfigError(
                    "'buildBinary' requires 'Retrain model' to also be enabled: set "
                    "'retrainModel': true in this step or in an earlier project-action step",
                    file=file,
                    path=f"{base}[{i}].builtinTransformationBlock.buildBinary",
                )
            )
    return errors


def _block_step_errors(step: dict, where: str, file: str) -> list[ConfigError]:
    """A transformation-block step's upload settings fit together."""
    errors: list[ConfigError] = []
    if step.get("uploadType") == "project":
        for key in ("outputDatasetName", "outputDatasetPathRule"):
            if key in step:
                errors.append(
                    ConfigError(
                        f"'{key}' goes with uploadType 'dataset'; a 'project' upload writes "
                        "the pipeline's project",
                        file=file,
                        path=f"{where}.{key}",
                    )
                )
        return errors
    for key in ("category", "label"):
        if key in step:
            errors.append(
                ConfigError(
                    f"'{key}' goes with uploadType 'project'",
                    file=file,
                    path=f"{where}.{key}",
                    expected="uploadType 'project'",
                    value=step.get("uploadType", "dataset"),
                )
            )
    if "outputDatasetName" not in step:
        errors.append(
            ConfigError(
                "a transformation-block step that uploads to a dataset needs "
                "'outputDatasetName' (the input items' own dataset adds the outputs to them)",
                file=file,
                path=f"{where}.outputDatasetName",
            )
        )
    return errors


def _has_userinfo(url: str) -> bool:
    try:
        return "@" in (urlsplit(url).netloc or "")
    except ValueError:
        return "@" in url


def semantic_errors(doc: Any, file: str) -> list[ConfigError]:
    """Rules the schema cannot phrase well (run on any document, defensively)."""
    errors: list[ConfigError] = []
    if isinstance(doc, dict):
        errors += _pipeline_errors(doc, file)
        steps, base = doc.get("steps"), "$.steps"
    else:
        steps, base = doc, "$"
    if isinstance(steps, list):
        for i, step in enumerate(steps):
            if isinstance(step, dict):
                errors += _step_errors(step, f"{base}[{i}]", file)
        errors += _action_order_errors(steps, base, file)
    return errors


# ---------------------------------------------------------------- model


def source_spec(block: dict[str, Any]) -> SourceSpec:
    """The source of an ``s3-to-project`` block (checked by the schema)."""
    scheme, _, rest = block["path"].partition("://")
    bucket, _, prefix = rest.partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return SourceSpec(
        scheme=scheme,
        bucket=bucket,
        prefix=prefix,
        conn_id=block.get("awsConnId", "aws_default"),
        endpoint=block.get("endpoint"),
        region=block.get("region"),
        access_key=block.get("accessKey"),
        secret_key_encrypted=block.get("secretKeyEncrypted"),
        file_types=tuple(t.lower() for t in block.get("fileTypes", DEFAULT_FILE_TYPES)),
        concurrency=block.get("concurrency", 16),
    )


def _step(raw: dict[str, Any], where: str) -> Step:
    name = raw["name"]
    if "transformationBlockId" in raw:
        return BlockStep(
            name=name,
            where=where,
            block_id=str(raw["transformationBlockId"]),
            filter=raw.get("filter"),
            parameters=tuple(
                (k, v if isinstance(v, str) else json.dumps(v))
                for k, v in raw.get("parameters", {}).items()
            ),
            parallel=raw.get("transformationParallel", 1),
            extra_cli_arguments=raw.get("extraCliArguments", ""),
            upload_type=raw.get("uploadType"),
            output_dataset_name=raw.get("outputDatasetName"),
            output_dataset_path_rule=raw.get("outputDatasetPathRule"),
            category=raw.get("category"),
            label=raw.get("label"),
            aws_conn_id=raw.get("awsConnId", "aws_default"),
        )
    block = raw["builtinTransformationBlock"]
    if block["type"] == "project-action":
        return ProjectActionStep(
            name=name,
            where=where,
            refresh_data_explorer=block.get("refreshDataExplorer", False),
            retrain_model=block.get("retrainModel", False),
            create_version=block.get("createVersion", False),
            build_binary=block.get("buildBinary"),
            build_binary_model_type=block.get("buildBinaryModelType"),
            max_drop=float(block.get("qualityGate", {}).get("maxDrop", DEFAULT_MAX_DROP)),
            require_approval=block.get("requireApproval", False),
        )
    return ImportStep(
        name=name,
        where=where,
        source=source_spec(block),
        label_strategy=block.get("labelStrategy", "infer-from-folder-name"),
        category=block.get("category", "split"),
        sync_deletions=block.get("syncDeletions", False),
    )


def _model(doc: Any, path: Path, digest: str) -> Pipeline:
    file = str(path)
    meta: dict[str, Any] = {} if isinstance(doc, list) else doc
    raw_steps, base = (doc, "$") if isinstance(doc, list) else (doc["steps"], "$.steps")
    pipeline_id = meta.get("id", path.stem)
    if not ID_PATTERN.fullmatch(pipeline_id):
        raise ConfigError(
            "the file name cannot serve as a pipeline id; set 'id'",
            file=file,
            path="$.id",
            expected="a letter or digit, then letters, digits, '_', '.', '-' (200 at most)",
            value=_value(pipeline_id),
        )
    project = meta.get("project", pipeline_id)
    if len(project) > MAX_PROJECT:
        raise ConfigError(
            f"the project name (here the id) is longer than {MAX_PROJECT} characters; "
            "set a shorter 'project'",
            file=file,
            path="$.project",
            value=_value(project),
        )
    return Pipeline(
        id=pipeline_id,
        name=meta.get("name", pipeline_id),
        project=project,
        description=meta.get("description", ""),
        schedule=parse_schedule(meta, file=file),
        tags=tuple(dict.fromkeys(meta.get("tags", ()))),
        owner=meta.get("owner", "edgeloop"),
        retries=meta.get("retries", 2),
        steps=tuple(_step(s, f"{base}[{i}]") for i, s in enumerate(raw_steps)),
        source_file=file,
        config_sha256=digest,
        notifications=_notifications(meta),
    )


def _notifications(meta: dict[str, Any]) -> Notifications:
    """The pipeline's email and webhook fields (checked by the schema)."""
    return Notifications(
        email_recipients=tuple(meta.get("emailRecipients", ())),
        when_to_email=meta.get("whenToEmail", "on_new_data"),
        email_conn_id=meta.get("emailConnId", "smtp_default"),
        webhook_url=meta.get("notificationWebhook"),
        webhook_conn_id=meta.get("webhookConnId"),
        organization_id=meta.get("organizationId"),
    )


def load_pipeline(path: str | Path) -> Pipeline:
    """Load and check one config file; raise ConfigError naming every problem.

    Never raises anything but ConfigError: an unexpected exception becomes one
    that names the file.
    """
    path = Path(path)
    file = str(path)
    try:
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ConfigError(
                    "file too large for a pipeline config",
                    file=file,
                    expected=f"at most {MAX_FILE_BYTES} bytes",
                    value=size,
                )
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ConfigError("no such file", file=file) from exc
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}", file=file) from exc
        doc = parse_json(data, file)
        _raise(schema_errors(doc, file) + semantic_errors(doc, file))
        return _model(doc, path, hashlib.sha256(data).hexdigest())
    except ConfigError:
        raise
    except (Exception, RecursionError) as exc:  # never let one file take the others down
        raise ConfigError(
            f"cannot load this config ({type(exc).__name__}: {_value(str(exc))})", file=file
        ) from exc


def config_files(directory: str | Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob("*.json") if p.is_file())


def load_pipelines(
    source: str | Path | Iterable[str | Path],
) -> tuple[list[Pipeline], dict[str, list[ConfigError]]]:
    """Every valid pipeline of a folder (or of a list of files, in that order), and the
    errors of each invalid file. Two files with the same id: the first (by name) wins,
    the second is an error. Never raises."""
    one_folder = isinstance(source, (str, Path))
    paths = config_files(source) if one_folder else [Path(p) for p in source]
    pipelines: list[Pipeline] = []
    errors: dict[str, list[ConfigError]] = {}
    seen: dict[str, str] = {}
    for path in paths:
        try:
            pipeline = load_pipeline(path)
        except ConfigError as exc:
            errors[str(path)] = errors_of(exc)
            continue
        if pipeline.id in seen:
            errors[str(path)] = [
                ConfigError(
                    f"pipeline id '{pipeline.id}' is already used by {seen[pipeline.id]}",
                    file=str(path),
                    path="$.id",
                )
            ]
            continue
        seen[pipeline.id] = str(path)
        pipelines.append(pipeline)
    return pipelines, errors
