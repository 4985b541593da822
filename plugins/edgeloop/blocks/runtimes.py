"""Where a block runs: how its command line, working folder and environment are made.

- ``local``: the Dockerfile's exec-form ENTRYPOINT (plus CMD) runs with the block
  folder as working directory, in the block's cached virtualenv (edgeloop.blocks.venvs)
  when it has a requirements.txt, else in the project's own environment; without a
  Dockerfile, ``transform.py`` runs as ``python3 -u transform.py``. Bytecode is cached
  in ``pycache/`` beside the venvs (PYTHONPYCACHEPREFIX).
- ``docker``: ``docker build`` the folder and ``docker run`` the image with the input
  (read-only) and output mounted; fails with a clear message when no Docker engine is
  reachable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeloop.blocks.masking import SecretMask
from edgeloop.blocks.params import BlockSpec
from edgeloop.blocks.process import BlockFailed, run_process
from edgeloop.blocks.venvs import ensure_venv, venv_root
from edgeloop.errors import BlockError, ConfigError

RUNTIMES = ("local", "docker")
_PYTHON_RE = re.compile(r"^python(3(\.\d+)?)?$")


class DockerUnavailable(BlockError):
    """The docker runtime was asked for but no Docker engine is reachable."""


@dataclass(frozen=True)
class Launch:
    """How to start one run of a block."""

    command: tuple[str, ...]
    cwd: Path | None
    env: dict[str, str]
    on_timeout: Callable[[], None] | None = None
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


# --------------------------------------------------------------------------- local


def local_launch(
    block_path: Path,
    argv: Sequence[str],
    block_env: Mapping[str, str],
    *,
    venvs: Path | None = None,
) -> Launch:
    """The entrypoint in the block's venv (built if needed), in the block folder."""
    entry = block_command(block_path)
    venv: Path | None = None
    requirements = block_path / "requirements.txt"
    if requirements.exists():
        venv, _ = ensure_venv(requirements, venvs)
        bindir = venv / "bin"
    else:
        bindir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env.update(block_env)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    # Bytecode goes to a cache beside the venvs, never into a source tree: without it
    # (PYTHONDONTWRITEBYTECODE) every block start recompiles pandas/scipy/GE (~10 s).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str((venvs or venv_root()) / "pycache"))
    env.setdefault("MPLBACKEND", "Agg")
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
    else:
        env.pop("VIRTUAL_ENV", None)
    exe = entry[0]
    if _PYTHON_RE.match(Path(exe).name):
        exe = str(bindir / "python") if venv is not None else sys.executable
    elif "/" not in exe:
        exe = shutil.which(exe, path=env["PATH"]) or exe
    return Launch((exe, *entry[1:], *argv), block_path, env, venv=venv)


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


def docker_launch(
    spec: BlockSpec,
    argv: Sequence[str],
    block_env: Mapping[str, str],
    *,
    in_path: Path | None,
    out_dir: Path,
    time_limit: float,
    on_line: Callable[[str], None] | None = None,
    mask: SecretMask | None = None,
) -> Launch:
    """Build the block's image (its own time limit) and return the `docker run` launch."""
    label = spec.directory.name
    reason = docker_unavailable_reason()
    if reason is not None:
        raise DockerUnavailable(
            f"runtime 'docker' for block {label!r}: no Docker engine is reachable "
            f"({reason}); start a Docker engine or use --runtime local"
        )
    build = run_process(
        ["docker", "build", "-t", _image_tag(spec), str(spec.directory.resolve())],
        cwd=None,
        env=os.environ,
        time_limit=time_limit,
        label=f"{label} build",
        on_line=on_line,
        mask=mask,
    )
    if build.exit_code != 0 or build.timed_out:
        what = "ran past its time limit" if build.timed_out else f"exit code {build.exit_code}"
        raise BlockFailed(
            f"docker build of block {label!r} failed ({what}); last lines:\n"
            + "\n".join(build.tail),
            exit_code=build.exit_code,
            tail=build.tail,
        )
    container = f"edgeloop-{uuid.uuid4().hex[:12]}"
    command = _docker_command(
        spec, argv, in_path=in_path, out_dir=out_dir, env=block_env, container=container
    )

    def kill_container() -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                ["docker", "kill", container], capture_output=True, check=False, timeout=30
            )

    return Launch(tuple(command), None, {**os.environ, **block_env}, on_timeout=kill_container)
