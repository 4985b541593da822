"""Start a block's process, stream its output, bound its time, leave nothing behind.

``run_process`` is the one place a block (or ``docker build``) runs:

- The process starts in a new session (so its own process group), stdin closed, stdout
  and stderr on one pipe, with a unique marker ``EDGELOOP_BLOCK_RUN=<token>`` added to
  its environment (inherited by everything it starts).
- The pipe is read in the calling thread, non-blocking, in chunks of at most
  CHUNK_BYTES, with a deadline: a process that keeps the pipe open can never make the
  runner wait. Lines are split on ``\\n``; a line longer than MAX_LINE_BYTES is passed on
  truncated, the rest of it read and dropped, so memory stays bounded whatever the block
  prints. Every line goes through the secret mask before it is logged, kept in the
  tail or handed to ``on_line``.
- At the time limit: SIGTERM to the process group, SIGKILL GRACE_SECONDS later.
- When the process has ended (on its own or killed), before it is reaped (so its group
  id cannot be reused): SIGKILL to whatever is left in its group, then every process
  whose environment carries the run's marker is killed too (found through
  ``/proc/<pid>/environ``), which catches children that left the group with
  ``setsid()``. Then the pipe is drained for at most DRAIN_SECONDS.

So a run lasts at most time limit + GRACE_SECONDS + DRAIN_SECONDS (plus the sweep).
Limit: a process that both leaves the group (setsid) and drops the marker from its
environment (an exec with a fresh environment) is not found; cgroups, which would
catch it, are not available to an unprivileged worker. Such a process keeps running,
but the runner stops reading its output after DRAIN_SECONDS and says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeloop.blocks.masking import SecretMask
from edgeloop.errors import BlockError

log = logging.getLogger(__name__)

MARKER_VARIABLE = "EDGELOOP_BLOCK_RUN"
CHUNK_BYTES = 64 * 1024
MAX_LINE_BYTES = 64 * 1024
TAIL_LINES = 30
GRACE_SECONDS = 5.0
DRAIN_SECONDS = 2.0
_POLL_SECONDS = 0.1
_SWEEP_ROUNDS = 20


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


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int
    tail: tuple[str, ...]  # the last TAIL_LINES lines, masked
    timed_out: bool
    leftovers_killed: int  # processes the block left behind, killed after it ended


class _Lines:
    """Split a byte stream into bounded, masked lines and hand each to `emit`."""

    def __init__(self, emit: Callable[[str], None], mask: SecretMask) -> None:
        self._emit = emit
        self._mask = mask
        self._buf = bytearray()
        self._dropping = False  # inside a line already passed on truncated
        # keep enough past the cut that a secret starting before it is masked whole
        self._limit = MAX_LINE_BYTES + mask.longest_bytes

    def _text(self, raw: bytes) -> str:
        return self._mask(raw.decode("utf-8", errors="replace").rstrip("\r"))

    def feed(self, data: bytes) -> None:
        self._buf += data
        start = 0
        while (end := self._buf.find(b"\n", start)) >= 0:
            if self._dropping:
                self._dropping = False
            else:
                self._emit(self._text(bytes(self._buf[start:end])))
            start = end + 1
        del self._buf[:start]
        if len(self._buf) > self._limit:
            if not self._dropping:
                kept = self._text(bytes(self._buf))[:MAX_LINE_BYTES]
                self._emit(f"{kept} [line truncated at {MAX_LINE_BYTES} bytes]")
                self._dropping = True
            self._buf.clear()

    def close(self) -> None:
        if self._buf and not self._dropping:
            self._emit(self._text(bytes(self._buf)))
        self._buf.clear()


def _exited(pid: int) -> bool:
    """True once `pid` (our child) has ended; it is left unreaped."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _marked_or_grouped(pgid: int, marker: bytes) -> list[int]:
    """Live processes in group `pgid` or whose environment holds `marker`."""
    found: list[int] = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (me, pgid):
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            if fields[0] == b"Z":
                continue
            if int(fields[2]) == pgid or marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return found


def kill_leftovers(pgid: int, token: str) -> int:
    """SIGKILL everything left of a run: its process group and its marked processes.

    Repeats until a scan finds nothing (a process may fork while we look). Returns how
    many processes were killed.
    """
    marker = f"{MARKER_VARIABLE}={token}".encode()
    _signal_group(pgid, signal.SIGKILL)
    killed: set[int] = set()
    for _ in range(_SWEEP_ROUNDS):
        pids = _marked_or_grouped(pgid, marker)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        _signal_group(pgid, signal.SIGKILL)
        time.sleep(0.02)
    return len(killed)


def run_process(
    cmd: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    time_limit: float,
    label: str,
    on_line: Callable[[str], None] | None = None,
    on_timeout: Callable[[], None] | None = None,
    mask: SecretMask | None = None,
) -> ProcessResult:
    """Run `cmd`, logging each output line as ``label | line``; see the module docstring."""
    mask = mask or SecretMask(())
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def emit(line: str) -> None:
        tail.append(line)
        log.info("%s | %s", label, line)
        if on_line is not None:
            on_line(line)

    lines = _Lines(emit, mask)
    token = uuid.uuid4().hex
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env={**env, MARKER_VARIABLE: token},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None  # stdout=PIPE
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    eof = False

    def read_until(deadline: float, *, stop: Callable[[], bool]) -> None:
        """Read output until `stop()` or the deadline (then wait, once the pipe is closed)."""
        nonlocal eof
        while not stop():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if eof:  # output closed, process still running
                time.sleep(min(remaining, _POLL_SECONDS))
            elif selector.select(min(remaining, _POLL_SECONDS)):
                try:
                    data = os.read(fd, CHUNK_BYTES)
                except BlockingIOError:
                    continue
                if not data:
                    eof = True
                    selector.unregister(fd)
                else:
                    lines.feed(data)

    timed_out = False
    leftovers = 0
    try:
        read_until(time.monotonic() + time_limit, stop=lambda: _exited(proc.pid))
        if not _exited(proc.pid):
            timed_out = True
            log.warning("%s ran past its time limit of %g s: stopping it", label, time_limit)
            if on_timeout is not None:
                on_timeout()
            _signal_group(proc.pid, signal.SIGTERM)
            read_until(time.monotonic() + GRACE_SECONDS, stop=lambda: _exited(proc.pid))
    finally:
        # the group leader is still unreaped here, so its group id cannot be reused
        if not _exited(proc.pid):
            _signal_group(proc.pid, signal.SIGKILL)
        leftovers = kill_leftovers(proc.pid, token)
        proc.wait()
        try:
            read_until(time.monotonic() + DRAIN_SECONDS, stop=lambda: eof)
            if not eof:
                log.warning(
                    "%s: a process outside the block's reach still holds its output; "
                    "stopped reading after %g s",
                    label,
                    DRAIN_SECONDS,
                )
            lines.close()
        finally:
            selector.close()
            proc.stdout.close()
    if leftovers:
        log.warning("%s: killed %d process(es) the block left running", label, leftovers)
    return ProcessResult(proc.returncode, tuple(tail), timed_out, leftovers)
