"""Run a transformation block folder once, on one input: ``run_block``.

``run_block`` is a plain function (a pipeline step that maps a block over catalog items
would wrap it; no such step exists yet). It checks the parameters and the input
against the block's parameters.json, starts the block with the reference platform's
command line and environment (edgeloop.blocks.runtimes: ``local`` venv or ``docker``),
streams its output to the log with secrets masked, enforces a hard time limit and kills
whatever the block left running (edgeloop.blocks.process), then collects the outputs
from inside the out-directory only (edgeloop.blocks.outputs) and applies the
``ei-metadata.json`` the block left to the item's metadata.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgeloop.blocks.masking import SecretMask, shown_command
from edgeloop.blocks.metadata import (
    ITEM_INFO_KEY,
    MetadataUpdate,
    apply_metadata_update,
    read_metadata_update,
)
from edgeloop.blocks.outputs import BlockOutputError, collect_outputs, read_item_metadata
from edgeloop.blocks.params import (
    BlockSpec,
    Scalar,
    build_invocation,
    load_block_spec,
    resolve_values,
)
from edgeloop.blocks.process import BlockFailed, BlockTimeout, run_process
from edgeloop.blocks.runtimes import (
    RUNTIMES,
    DockerUnavailable,
    block_command,
    docker_launch,
    docker_unavailable_reason,
    local_launch,
)
from edgeloop.blocks.venvs import ensure_venv
from edgeloop.errors import ConfigError

__all__ = [
    "DEFAULT_TIME_LIMIT",
    "BlockFailed",
    "BlockOutputError",
    "BlockResult",
    "BlockTimeout",
    "DockerUnavailable",
    "block_command",
    "block_environment",
    "docker_unavailable_reason",
    "ensure_venv",
    "run_block",
]

log = logging.getLogger(__name__)

DEFAULT_TIME_LIMIT = 3600.0
NO_RUN_YET = "1970-01-01T00:00:00.000Z"
API_KEY_VARIABLE = "EI_API_KEY"


@dataclass(frozen=True)
class BlockResult:
    block: str
    runtime: str
    exit_code: int
    seconds: float
    command: tuple[str, ...]  # as logged: the HMAC key and secrets masked
    metadata: dict[str, str]  # the item's metadata after the block's ei-metadata.json
    update: MetadataUpdate | None
    # Standalone blocks that write one folder per item may leave
    # OUT/<item>/ei-metadata.json; each is validated and applied to {}.
    item_metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    output_tail: tuple[str, ...] = ()
    venv: Path | None = None


def block_environment(
    *, last_successful_run: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The reference platform's variables, with edgeloop's values."""
    get = os.environ.get
    env = {
        "EI_API_ENDPOINT": get("EDGELOOP_API_ENDPOINT", "http://localhost:8080/edgeloop/api/v1"),
        API_KEY_VARIABLE: get("EDGELOOP_API_KEY", ""),
        "EI_ORGANIZATION_ID": get("EDGELOOP_ORGANIZATION_ID", "1"),
        "EI_INGESTION_HOST": get("EDGELOOP_INGESTION_HOST", "localhost"),
        "EI_LAST_SUCCESSFUL_RUN": last_successful_run or NO_RUN_YET,
    }
    if get("EDGELOOP_PROJECT_ID"):
        env["EI_PROJECT_ID"] = get("EDGELOOP_PROJECT_ID", "")
    env.update(extra or {})
    return env


def _data_item_info(in_path: Path | None) -> dict[str, object]:
    files: list[Path] = []
    if in_path is not None:
        files = [in_path] if in_path.is_file() else [p for p in in_path.rglob("*") if p.is_file()]
    return {
        "id": 0,
        "name": in_path.name if in_path else "",
        "dataset": "",
        "bucketName": "",
        "bucketPath": str(in_path) if in_path else "",
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "totalFileCount": len(files),
        "totalFileSize": sum(p.stat().st_size for p in files),
    }


# operatesOn -> (the input it takes, the error when it is not given, the expected form)
_INPUT_RULES: dict[str, tuple[str | None, str, str]] = {
    "file": ("file", "this block operates on a file: give an existing --in-file", "--in-file FILE"),
    "directory": (
        "directory",
        "this block operates on a directory: give an existing --in-directory",
        "--in-directory DIR",
    ),
    "standalone": (
        None,
        "this block is standalone: it takes no input",
        "no --in-file/--in-directory",
    ),
}


def _check_input(
    spec: BlockSpec, operates_on: str, given: str | None, in_path: Path | None
) -> None:
    """The input matches the block's ``operatesOn`` and exists."""
    takes, message, expected = _INPUT_RULES[operates_on]
    exists = in_path is not None and (in_path.is_file() if takes == "file" else in_path.is_dir())
    if given != takes or (takes is not None and not exists):
        raise ConfigError(
            message,
            file=str(spec.parameters_file),
            path="$.info.operatesOn",
            expected=expected,
            value=str(in_path) if in_path else None,
        )


def run_block(
    block_dir: str | Path,
    *,
    out_directory: str | Path,
    in_file: str | Path | None = None,
    in_directory: str | Path | None = None,
    metadata: Mapping[str, str] | None = None,
    item_info: Mapping[str, object] | None = None,
    params: Mapping[str, Scalar] | None = None,
    extra_args: Sequence[str] = (),
    runtime: str = "local",
    time_limit: float | None = None,
    hmac_key: str = "",
    last_successful_run: str | None = None,
    env: Mapping[str, str] | None = None,
    venvs: str | Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> BlockResult:
    """Run the block in `block_dir` once and return the item's resulting metadata.

    Raises ConfigError for a malformed parameters.json / ei-metadata.json or a bad
    parameter value (before anything starts), BlockFailed on a non-zero exit,
    BlockTimeout past the time limit, DockerUnavailable without an engine,
    BlockOutputError for a symlink leaving the out-directory.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(
            "unknown runtime", path="runtime", expected=f"one of {list(RUNTIMES)}", value=runtime
        )
    spec = load_block_spec(block_dir)
    block_path = spec.directory.resolve()
    label = spec.directory.name
    if in_file is not None and in_directory is not None:
        raise ConfigError("give --in-file or --in-directory, not both", path="input")
    in_path = Path(in_file or in_directory).resolve() if (in_file or in_directory) else None
    given = "file" if in_file is not None else "directory" if in_directory is not None else None
    operates_on = spec.operates_on or given or "standalone"
    _check_input(spec, operates_on, given, in_path)

    item_metadata = {k: str(v) for k, v in (metadata or {}).items() if k != ITEM_INFO_KEY}
    metadata_json = json.dumps(
        {**item_metadata, ITEM_INFO_KEY: dict(item_info or _data_item_info(in_path))}
    )
    values = resolve_values(spec, params)
    out_dir = Path(out_directory).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    invocation = build_invocation(
        spec,
        operates_on=operates_on,
        in_path=str(in_path) if in_path else None,
        out_directory=str(out_dir),
        hmac_key=hmac_key,
        metadata_json=metadata_json,
        values=values,
        extra_args=extra_args,
    )
    block_env = block_environment(last_successful_run=last_successful_run, extra=env)
    block_env.update(invocation.env)  # the secret parameters
    missing = [
        v for v in spec.required_env_variables if not (block_env.get(v) or os.environ.get(v))
    ]
    if missing:
        raise ConfigError(
            "required environment variables are not set",
            file=str(spec.parameters_file),
            path="$.info.requiredEnvVariables",
            expected="set in the environment",
            value=missing,
        )
    mask = SecretMask([*invocation.env.values(), block_env[API_KEY_VARIABLE], hmac_key])
    limit = float(time_limit or spec.time_limit or DEFAULT_TIME_LIMIT)
    venvs_path = Path(venvs) if venvs else None

    started = time.monotonic()
    if runtime == "docker":
        launch = docker_launch(
            spec,
            invocation.argv,
            block_env,
            in_path=in_path,
            out_dir=out_dir,
            time_limit=limit,
            on_line=on_line,
            mask=mask,
        )
    else:
        launch = local_launch(block_path, invocation.argv, block_env, venvs=venvs_path)

    shown = shown_command(launch.command, mask)
    log.info(
        "running block %s (%s runtime, operatesOn %s, time limit %g s): %s",
        label,
        runtime,
        operates_on,
        limit,
        shlex.join(shown),
    )
    proc = run_process(
        launch.command,
        cwd=launch.cwd,
        env=launch.env,
        time_limit=limit,
        label=label,
        on_line=on_line,
        on_timeout=launch.on_timeout,
        mask=mask,
    )
    seconds = time.monotonic() - started
    last = "\n".join(proc.tail) if proc.tail else "(no output)"
    if proc.timed_out:
        raise BlockTimeout(
            f"block {label!r} ran past its time limit of {limit:g} s and was "
            f"stopped; last lines of output:\n{last}",
            time_limit=limit,
            tail=proc.tail,
        )
    if proc.exit_code != 0:
        raise BlockFailed(
            f"block {label!r} failed with exit code {proc.exit_code}; "
            f"last lines of output:\n{last}",
            exit_code=proc.exit_code,
            tail=proc.tail,
        )

    outputs = collect_outputs(out_dir)  # first: refuses links leaving the out-directory
    update = read_metadata_update(out_dir)
    final = apply_metadata_update(item_metadata, update) if update else dict(item_metadata)
    per_item = read_item_metadata(out_dir)
    log.info(
        "block %s finished in %.1f s: %d output files, metadata action %s",
        label,
        seconds,
        len(outputs),
        update.action if update else "none",
    )
    return BlockResult(
        block=label,
        runtime=runtime,
        exit_code=proc.exit_code,
        seconds=seconds,
        command=shown,
        metadata=final,
        update=update,
        item_metadata=per_item,
        outputs=outputs,
        output_tail=proc.tail,
        venv=launch.venv,
    )
