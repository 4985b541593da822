"""Run a transformation block folder on one input, locally or in Docker.

``run_block`` is a plain function (the Airflow operator that maps blocks over
catalog items wraps it). It checks the parameters, starts the block with the
reference platform's command line and environment, streams its output line by
line to the log, enforces a time limit, and applies the ``ei-metadata.json``
the block leaves to the item's metadata.

Runtimes:

- ``local``: the Dockerfile's exec-form ENTRYPOINT (plus CMD) runs with the
  block folder as working directory, in a virtualenv built from the block's
  requirements.txt by uv (``uv venv --system-site-packages`` + ``uv pip
  install``), cached under ``$EDGELOOP_BLOCK_VENVS`` (default
  ``$EDGELOOP_HOME/block-venvs``, else ``~/.cache/edgeloop/block-venvs``) by a
  hash of requirements.txt and the Python version, so it is built once and
  reused while the file is unchanged; bytecode is cached in ``pycache/`` there
  (PYTHONPYCACHEPREFIX). Without requirements.txt the block runs
  in the project's own environment; without a Dockerfile, ``transform.py`` runs
  as ``python3 -u transform.py``.
- ``docker``: ``docker build`` the folder and ``docker run`` the image with the
  input and output mounted; fails with a clear message when no Docker engine is
  reachable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgeloop.blocks.metadata import (
    FILE_NAME as METADATA_FILE,
)
from edgeloop.blocks.metadata import (
    MetadataUpdate,
    apply_metadata_update,
    read_metadata_update,
)
from edgeloop.blocks.params import (
    BlockSpec,
    Scalar,
    build_invocation,
    load_block_spec,
    resolve_values,
)
from edgeloop.errors import BlockError, ConfigError

log = logging.getLogger(__name__)

RUNTIMES = ("local", "docker")
DEFAULT_TIME_LIMIT = 3600.0
TAIL_LINES = 30
NO_RUN_YET = "1970-01-01T00:00:00.000Z"
_PYTHON_RE = re.compile(r"^python(3(\.\d+)?)?$")


class BlockFailed(BlockError):
    """The block exited with a non-zero code."""

    def __init__(self, message: str, *, exit_code: int, tail: Sequence[str]) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.tail = tuple(tail)


class BlockTimeout(BlockError):
    """The block ran past its time limit and was stopped."""

    def __init__(self, message: str, *, time_limit: float, tail: Sequence[str]) -> None:
        super().__init__(message)
        self.time_limit = time_limit
        self.tail = tuple(tail)


class DockerUnavailable(BlockError):
    """The docker runtime was asked for but no Docker engine is reachable."""


@dataclass(frozen=True)
class BlockResult:
    block: str
    runtime: str
    exit_code: int
    seconds: float
    command: tuple[str, ...]
    metadata: dict[str, str]  # the item's metadata after the block's ei-metadata.json
    update: MetadataUpdate | None
    # Standalone blocks that write one folder per item may leave
    # OUT/<item>/ei-metadata.json; each is validated and applied to {}.
    item_metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    output_tail: tuple[str, ...] = ()
    venv: Path | None = None


# --------------------------------------------------------------------------- entrypoint


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        parts = buf.split(None, 1)
        if parts:
            out.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        buf = ""
    return out


def _exec_form(dockerfile: Path, instruction: str, text: str) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{instruction} must be in exec form",
            file=str(dockerfile),
            path=instruction,
            expected='a JSON list such as ["python3", "-u", "transform.py"]',
            value=text,
        )
    return value


def block_command(block_dir: Path) -> list[str]:
    """How the block starts: the Dockerfile's ENTRYPOINT (+ CMD), or transform.py."""
    dockerfile = block_dir / "Dockerfile"
    if dockerfile.exists():
        entrypoint: list[str] = []
        cmd: list[str] = []
        for instruction, args in _dockerfile_instructions(dockerfile):
            if instruction == "ENTRYPOINT":
                entrypoint = _exec_form(dockerfile, instruction, args)
            elif instruction == "CMD":
                cmd = _exec_form(dockerfile, instruction, args)
        if not entrypoint:
            raise ConfigError(
                "no ENTRYPOINT",
                file=str(dockerfile),
                expected='ENTRYPOINT ["python3", "-u", "transform.py"]',
                value=None,
            )
        return entrypoint + cmd
    if (block_dir / "transform.py").exists():
        return ["python3", "-u", "transform.py"]
    raise BlockError(
        f"{block_dir}: neither a Dockerfile nor a transform.py: cannot tell how the block starts"
    )


# --------------------------------------------------------------------------- venvs


def venv_root() -> Path:
    """Where block virtualenvs are cached."""
    from edgeloop.settings import get_settings

    return get_settings().block_venvs


def _uv() -> str | None:
    beside = Path(sys.executable).with_name("uv")
    if beside.exists():
        return str(beside)
    return shutil.which("uv")


def _run_quiet(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-TAIL_LINES:])
        raise BlockError(f"{what} failed (exit code {proc.returncode}): {shlex.join(cmd)}\n{tail}")


def ensure_venv(requirements: Path, root: Path | None = None) -> tuple[Path, bool]:
    """The virtualenv for `requirements`, built if needed. Returns (path, built_now).

    Keyed by sha256 of the file's bytes and the interpreter version, built
    under a file lock (two tasks needing the same venv build it once), marked
    complete only after the install succeeded.
    """
    root = root or venv_root()
    content = requirements.read_bytes()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    digest = hashlib.sha256(content + tag.encode()).hexdigest()[:16]
    venv = root / f"{tag}-{digest}"
    marker = venv / ".edgeloop-complete"
    if marker.exists():
        return venv, False
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{tag}-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return venv, False
        if venv.exists():
            shutil.rmtree(venv)
        started = time.monotonic()
        uv = _uv()
        python = venv / "bin" / "python"
        what = f"building the virtualenv for {requirements}"
        if uv:
            _run_quiet(
                [
                    uv,
                    "venv",
                    "--quiet",
                    "--system-site-packages",
                    "--python",
                    sys.executable,
                    str(venv),
                ],
                what,
            )
            _run_quiet(
                [uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements)],
                what,
            )
        else:
            _run_quiet([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], what)
            _run_quiet(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    str(requirements),
                ],
                what,
            )
        (venv / "requirements.txt").write_bytes(content)
        marker.write_text(f"{requirements}\n", encoding="utf-8")
        log.info(
            "built block virtualenv %s for %s in %.1f s",
            venv,
            requirements,
            time.monotonic() - started,
        )
    return venv, True


# --------------------------------------------------------------------------- process


def _stream(
    cmd: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    time_limit: float,
    label: str,
    on_line: Callable[[str], None] | None,
    on_timeout: Callable[[], None] | None = None,
) -> tuple[int, list[str], bool]:
    """Run `cmd`, logging each output line; returns (exit code, last lines, timed out)."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def pump() -> None:
        assert proc.stdout is not None  # set by stdout=PIPE
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            tail.append(line)
            log.info("%s | %s", label, line)
            if on_line is not None:
                on_line(line)

    reader = threading.Thread(target=pump, name=f"block-output-{label}", daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        log.warning("%s ran past its time limit of %g s: stopping it", label, time_limit)
        if on_timeout is not None:
            on_timeout()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        if proc.poll() is None:  # interrupted (e.g. KeyboardInterrupt): do not leak the block
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode, list(tail), timed_out


def block_environment(
    *, last_successful_run: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The reference platform's variables, with edgeloop's values."""
    get = os.environ.get
    env = {
        "EI_API_ENDPOINT": get("EDGELOOP_API_ENDPOINT", "http://localhost:8080/edgeloop/api/v1"),
        "EI_API_KEY": get("EDGELOOP_API_KEY", ""),
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


# --------------------------------------------------------------------------- docker


def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers; otherwise why not."""
    exe = shutil.which("docker")
    if exe is None:
        return "the docker client is not installed"
    try:
        proc = subprocess.run(
            [exe, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return lines[-1] if lines else f"`docker info` exited with code {proc.returncode}"
    return None


def _image_tag(spec: BlockSpec) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in spec.directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(spec.directory)).encode() + b"\0" + path.read_bytes())
    slug = re.sub(r"[^a-z0-9_.-]+", "-", spec.directory.name.lower()).strip("-.") or "block"
    return f"edgeloop-block-{slug}:{digest.hexdigest()[:12]}"


def _docker_command(
    spec: BlockSpec,
    argv: Sequence[str],
    *,
    in_path: Path | None,
    out_dir: Path,
    env: Mapping[str, str],
    container: str,
) -> list[str]:
    """`docker run` with the input (read-only) and output mounted; paths rewritten."""
    cmd = ["docker", "run", "--rm", "--name", container, "--user", f"{os.getuid()}:{os.getgid()}"]
    mapping: dict[str, str] = {str(out_dir): "/data/out"}
    cmd += ["-v", f"{out_dir}:/data/out"]
    if in_path is not None:
        if in_path.is_file():
            cmd += ["-v", f"{in_path.parent}:/data/in:ro"]
            mapping[str(in_path)] = f"/data/in/{in_path.name}"
        else:
            cmd += ["-v", f"{in_path}:/data/in:ro"]
            mapping[str(in_path)] = "/data/in"
    for name in env:
        cmd += ["-e", name]  # value comes from the client's environment: secrets stay off argv
    cmd.append(_image_tag(spec))
    cmd += [mapping.get(a, a) for a in argv]
    return cmd


# --------------------------------------------------------------------------- run


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

    Raises ConfigError for a malformed parameters.json / ei-metadata.json or a
    bad parameter value (before anything starts), BlockFailed on a non-zero
    exit, BlockTimeout past the time limit, DockerUnavailable without an engine.
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

    item_metadata = {k: str(v) for k, v in (metadata or {}).items() if k != "dataItemInfo"}
    metadata_json = json.dumps(
        {**item_metadata, "dataItemInfo": dict(item_info or _data_item_info(in_path))}
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
    block_env.update(invocation.env)
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
    limit = float(time_limit or spec.time_limit or DEFAULT_TIME_LIMIT)
    entry = block_command(block_path)

    venv: Path | None = None
    started = time.monotonic()
    on_timeout: Callable[[], None] | None = None
    if runtime == "docker":
        reason = docker_unavailable_reason()
        if reason is not None:
            raise DockerUnavailable(
                f"runtime 'docker' for block {label!r}: no Docker engine is reachable "
                f"({reason}); start a Docker engine or use --runtime local"
            )
        tag = _image_tag(spec)
        rc, tail, _ = _stream(
            ["docker", "build", "-t", tag, str(block_path)],
            cwd=None,
            env=os.environ,
            time_limit=limit,
            label=f"{label} build",
            on_line=on_line,
        )
        if rc != 0:
            raise BlockFailed(
                f"docker build of block {label!r} failed with exit code {rc}; "
                "last lines:\n" + "\n".join(tail),
                exit_code=rc,
                tail=tail,
            )
        container = f"edgeloop-{uuid.uuid4().hex[:12]}"
        command = _docker_command(
            spec,
            invocation.argv,
            in_path=in_path,
            out_dir=out_dir,
            env=block_env,
            container=container,
        )
        proc_env = {**os.environ, **block_env}
        cwd: Path | None = None

        def on_timeout() -> None:
            subprocess.run(["docker", "kill", container], capture_output=True, check=False)
    else:
        requirements = block_path / "requirements.txt"
        if requirements.exists():
            venv, _ = ensure_venv(requirements, Path(venvs) if venvs else None)
            bindir = venv / "bin"
        else:
            bindir = Path(sys.executable).parent
        proc_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
        proc_env.update(block_env)
        proc_env["PATH"] = f"{bindir}{os.pathsep}{proc_env.get('PATH', '')}"
        proc_env["PYTHONUNBUFFERED"] = "1"
        # Bytecode goes to a cache beside the venvs, never into a source tree: without it
        # (PYTHONDONTWRITEBYTECODE) every block start recompiles pandas/scipy/GE (~10 s).
        proc_env.pop("PYTHONDONTWRITEBYTECODE", None)
        proc_env.setdefault(
            "PYTHONPYCACHEPREFIX", str((Path(venvs) if venvs else venv_root()) / "pycache")
        )
        proc_env.setdefault("MPLBACKEND", "Agg")
        if venv is not None:
            proc_env["VIRTUAL_ENV"] = str(venv)
        else:
            proc_env.pop("VIRTUAL_ENV", None)
        exe = entry[0]
        if _PYTHON_RE.match(Path(exe).name):
            exe = str(bindir / "python") if venv is not None else sys.executable
        elif "/" not in exe:
            exe = shutil.which(exe, path=proc_env["PATH"]) or exe
        command = [exe, *entry[1:], *invocation.argv]
        cwd = block_path

    shown = list(command)  # secrets travel in the environment, never on the command line
    log.info(
        "running block %s (%s runtime, operatesOn %s, time limit %g s): %s",
        label,
        runtime,
        operates_on,
        limit,
        shlex.join(shown),
    )
    rc, tail, timed_out = _stream(
        command,
        cwd=cwd,
        env=proc_env,
        time_limit=limit,
        label=label,
        on_line=on_line,
        on_timeout=on_timeout,
    )
    seconds = time.monotonic() - started
    last = "\n".join(tail) if tail else "(no output)"
    if timed_out:
        raise BlockTimeout(
            f"block {label!r} ran past its time limit of {limit:g} s and was "
            f"stopped; last lines of output:\n{last}",
            time_limit=limit,
            tail=tail,
        )
    if rc != 0:
        raise BlockFailed(
            f"block {label!r} failed with exit code {rc}; last lines of output:\n{last}",
            exit_code=rc,
            tail=tail,
        )

    update = read_metadata_update(out_dir)
    final = apply_metadata_update(item_metadata, update) if update else dict(item_metadata)
    per_item: dict[str, dict[str, str]] = {}
    for sub in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        sub_update = read_metadata_update(sub)
        if sub_update is not None:
            per_item[sub.name] = apply_metadata_update({}, sub_update)
    outputs = tuple(
        sorted(
            str(p.relative_to(out_dir))
            for p in out_dir.rglob("*")
            if p.is_file() and p.name != METADATA_FILE
        )
    )
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
        exit_code=rc,
        seconds=seconds,
        command=tuple(shown),
        metadata=final,
        update=update,
        item_metadata=per_item,
        outputs=outputs,
        output_tail=tuple(tail),
        venv=venv,
    )
