"""A block's parameters.json: load and validate (both forms), check parameter
values, and build the command line and environment a block is started with.

Two forms are accepted, both validated by include/schemas/block-parameters.schema.json:

- the current form ``{"info": {...}, "parameters": [...]}``;
- the older bare list ``[{"name", "type", "param", "value", ...}, ...]``.

Parameter types follow the reference platform: string, int, float, select,
boolean (passed as ``--p 1`` / ``--p 0``), bucket and dataset (strings), flag
(``--p`` only when set) and secret (never on the command line: an environment
variable named after ``param``, upper-cased with ``-`` turned into ``_``).
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeloop.blocks._jsonfile import read_json_file
from edgeloop.blocks._schemas import validate
from edgeloop.errors import ConfigError

OPERATES_ON = ("file", "directory", "standalone")
MAX_PARAMETERS_BYTES = 1024 * 1024
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class BlockParameter:
    """One entry of parameters.json."""

    name: str
    type: str
    param: str
    default: Scalar | None
    help: str = ""
    optional: bool = False
    valid: tuple[str, ...] = ()

    @property
    def env_name(self) -> str:
        """The environment variable a secret parameter is passed in."""
        return self.param.upper().replace("-", "_")


@dataclass(frozen=True)
class BlockSpec:
    """A block folder's parameters.json as a typed model."""

    directory: Path
    name: str
    operates_on: str | None  # None: not stated (bare-list form); inferred from the input
    cli_arguments: tuple[str, ...]
    allow_extra_cli_arguments: bool
    required_env_variables: tuple[str, ...]
    time_limit: float | None
    parameters: tuple[BlockParameter, ...]
    legacy_form: bool

    @property
    def parameters_file(self) -> Path:
        return self.directory / "parameters.json"

    def parameter(self, key: str) -> BlockParameter | None:
        """Look a parameter up by its ``param`` (CLI name) or its display name."""
        for p in self.parameters:
            if key in (p.param, p.name):
                return p
        return None


@dataclass(frozen=True)
class Invocation:
    """The arguments and environment a block is started with."""

    argv: tuple[str, ...]
    env: dict[str, str]
    values: dict[str, str]  # param -> the value as passed ("" for unset flags; secrets masked)


def load_block_spec(block_dir: str | Path) -> BlockSpec:
    """Load and validate ``BLOCK_DIR/parameters.json``.

    A block without a parameters.json is accepted as a block with no
    parameters (operatesOn inferred from the input it is given).
    """
    directory = Path(block_dir)
    if not directory.is_dir():
        raise ConfigError("block folder not found", file=str(directory))
    path = directory / "parameters.json"
    if not path.exists() and not path.is_symlink():
        return BlockSpec(directory, directory.name, None, (), False, (), None, (), True)
    doc: Any = read_json_file(path, max_bytes=MAX_PARAMETERS_BYTES)
    validate(doc, "block-parameters.schema.json", file=str(path))

    legacy = isinstance(doc, list)
    info: dict[str, Any] = {} if legacy else doc.get("info", {})
    raw_params: list[dict[str, Any]] = doc if legacy else doc["parameters"]
    params: list[BlockParameter] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_params):
        param = raw["param"]
        if param in seen:
            raise ConfigError(
                "duplicate parameter",
                file=str(path),
                path=f"$.parameters[{i}].param",
                value=param,
                expected="a unique name",
            )
        seen.add(param)
        valid = tuple(
            _option_text(v["value"] if isinstance(v, dict) else v) for v in raw.get("valid", ())
        )
        params.append(
            BlockParameter(
                name=raw["name"],
                type=raw["type"],
                param=param,
                default=raw.get("value"),
                help=raw.get("help", ""),
                optional=bool(raw.get("optional", False)),
                valid=valid,
            )
        )
    try:
        cli_arguments = tuple(shlex.split(info.get("cliArguments", "")))
    except ValueError as exc:
        raise ConfigError(
            f"cannot split into arguments: {exc}",
            file=str(path),
            path="$.info.cliArguments",
        ) from exc
    return BlockSpec(
        directory=directory,
        name=info.get("name") or directory.name,
        operates_on=info.get("operatesOn"),
        cli_arguments=cli_arguments,
        allow_extra_cli_arguments=bool(info.get("allowExtraCliArguments", legacy)),
        required_env_variables=tuple(info.get("requiredEnvVariables", ())),
        time_limit=info.get("timeLimitSeconds"),
        parameters=tuple(params),
        legacy_form=legacy,
    )


def _option_text(value: Scalar) -> str:
    """A select option or value as compared and passed: JSON true -> "true"."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_bool(value: Scalar, *, what: str) -> bool:
    """Booleans as the reference platform's blocks write them: true/false, 1/0, ..."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError("not a boolean", path=what, expected="true/false or 1/0", value=value)


def _check_value(p: BlockParameter, value: Scalar, file: str) -> str:
    """Check one value against its parameter; return it as passed on the command line."""
    where = f"parameter {p.param!r}"
    if p.type == "int":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(
                "not an integer", file=file, path=where, expected="an integer", value=value
            )
        try:
            return str(int(str(value).strip(), 10))
        except ValueError:
            raise ConfigError(
                "not an integer", file=file, path=where, expected="an integer", value=value
            ) from None
    if p.type == "float":
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ConfigError(
                "not a finite number",
                file=file,
                path=where,
                expected="a number such as 0.5",
                value=value,
            )
        return str(value).strip()
    if p.type == "select":
        text = _option_text(value)
        if text not in p.valid:
            raise ConfigError(
                "not one of the valid options",
                file=file,
                path=where,
                expected=f"one of {list(p.valid)}",
                value=value,
            )
        return text
    if p.type in ("boolean", "flag"):
        return "1" if parse_bool(value, what=where) else "0"
    return str(value)  # string, bucket, dataset, secret


def resolve_values(
    spec: BlockSpec,
    given: Mapping[str, Scalar] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Check `given` values (by ``param`` or display name) against the spec.

    Returns ``{param: value}`` for every parameter that has a value (given or
    default). Secrets not given are taken from `environ` (their env_name).
    Raises ConfigError naming the parameter for unknown names, bad values and
    missing required ones.
    """
    file = str(spec.parameters_file)
    environ = os.environ if environ is None else environ
    by_param: dict[str, Scalar] = {}
    for key, value in (given or {}).items():
        p = spec.parameter(key)
        if p is None:
            known = [q.param for q in spec.parameters]
            raise ConfigError(
                "unknown parameter",
                file=file,
                path=f"parameter {key!r}",
                expected=f"one of {known}",
                value=value,
            )
        by_param[p.param] = value
    resolved: dict[str, str] = {}
    for p in spec.parameters:
        value: Scalar | None = by_param.get(p.param, p.default)
        if p.type == "secret" and p.param not in by_param:
            value = environ.get(p.env_name, value)
        if p.type in ("boolean", "flag") and (value is None or value == ""):
            value = False
        if value is None or (isinstance(value, str) and not value.strip()):
            if p.optional:
                continue
            raise ConfigError(
                "required parameter has no value",
                file=file,
                path=f"parameter {p.param!r}",
                expected=f"--param {p.param}=<{p.type}>",
                value=value,
            )
        resolved[p.param] = _check_value(p, value, file)
    return resolved


def build_invocation(
    spec: BlockSpec,
    *,
    operates_on: str,
    in_path: str | None,
    out_directory: str,
    hmac_key: str,
    metadata_json: str,
    values: Mapping[str, str],
    extra_args: Sequence[str] = (),
) -> Invocation:
    """The argv (after the entrypoint) and extra environment for one run."""
    if operates_on not in OPERATES_ON:
        raise ConfigError(
            "unknown operatesOn",
            file=str(spec.parameters_file),
            path="$.info.operatesOn",
            expected=f"one of {list(OPERATES_ON)}",
            value=operates_on,
        )
    argv: list[str] = []
    if operates_on == "file":
        argv += ["--in-file", str(in_path)]
    elif operates_on == "directory":
        argv += ["--in-directory", str(in_path)]
    argv += ["--out-directory", out_directory, "--hmac-key", hmac_key, "--metadata", metadata_json]
    env: dict[str, str] = {}
    shown: dict[str, str] = {}
    for p in spec.parameters:
        if p.param not in values:
            continue
        value = values[p.param]
        if p.type == "secret":
            env[p.env_name] = value
            shown[p.param] = "***"
        elif p.type == "flag":
            if value == "1":
                argv.append(f"--{p.param}")
            shown[p.param] = value
        else:
            argv += [f"--{p.param}", value]
            shown[p.param] = value
    argv += spec.cli_arguments
    if extra_args:
        if not spec.allow_extra_cli_arguments:
            raise ConfigError(
                "this block does not allow extra CLI arguments",
                file=str(spec.parameters_file),
                path="$.info.allowExtraCliArguments",
                expected="true to pass extra arguments",
                value=list(extra_args),
            )
        argv += list(extra_args)
    return Invocation(tuple(argv), env, shown)
