"""The cached virtualenv a block with a requirements.txt runs in.

Built by uv (``uv venv --system-site-packages`` + ``uv pip install``; ``python -m venv``
+ pip without uv) under ``$EDGELOOP_BLOCK_VENVS`` (settings.block_venvs), keyed by a
hash of requirements.txt and the Python version, so it is built once and reused while
the file is unchanged. The build holds a file lock (two tasks needing the same venv
build it once) and marks the venv complete only after the install succeeded.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edgeloop.errors import BlockError

log = logging.getLogger(__name__)

BUILD_TIME_LIMIT = 1800.0  # one build step (create, install); a hung index must not hang us
_TAIL_LINES = 30


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
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=BUILD_TIME_LIMIT
        )
    except subprocess.TimeoutExpired:
        raise BlockError(
            f"{what} did not finish within {BUILD_TIME_LIMIT:g} s: {shlex.join(cmd)}"
        ) from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-_TAIL_LINES:])
        raise BlockError(f"{what} failed (exit code {proc.returncode}): {shlex.join(cmd)}\n{tail}")


def _build(venv: Path, requirements: Path) -> None:
    uv = _uv()
    python = venv / "bin" / "python"
    what = f"building the virtualenv for {requirements}"
    if uv:
        create = [uv, "venv", "--quiet", "--system-site-packages", "--python", sys.executable]
        _run_quiet([*create, str(venv)], what)
        install = [uv, "pip", "install", "--quiet", "--python", str(python)]
        _run_quiet([*install, "-r", str(requirements)], what)
    else:
        _run_quiet([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], what)
        install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run_quiet([*install, "-r", str(requirements)], what)


def ensure_venv(requirements: Path, root: Path | None = None) -> tuple[Path, bool]:
    """The virtualenv for `requirements`, built if needed. Returns (path, built_now)."""
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
        _build(venv, requirements)
        (venv / "requirements.txt").write_bytes(content)
        marker.write_text(f"{requirements}\n", encoding="utf-8")
        log.info(
            "built block virtualenv %s for %s in %.1f s",
            venv,
            requirements,
            time.monotonic() - started,
        )
    return venv, True
