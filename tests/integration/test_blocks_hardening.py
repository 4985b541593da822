"""The block runner against hostile blocks: runaway processes, malformed and oversized
files, escapes from the out-directory, secrets in the log, unbounded output.

Each block here is written into tmp_path by the test (a `transform.py` + parameters.json)
and run as a real process.
"""

from __future__ import annotations

import json
import logging
import os
import textwrap
import time
from pathlib import Path

import pytest

from edgeloop.blocks.metadata import MAX_KEYS, MAX_METADATA_BYTES
from edgeloop.blocks.process import MAX_LINE_BYTES
from edgeloop.blocks.runner import BlockFailed, BlockTimeout, run_block
from edgeloop.errors import BlockError, ConfigError

# A hang used to last forever: a generous bound, never a timing assertion.
HANG = pytest.mark.timeout(180)


def make_block(
    tmp_path: Path,
    code: str,
    *,
    operates_on: str = "standalone",
    parameters: list[dict[str, object]] | None = None,
    name: str = "block",
) -> Path:
    block = tmp_path / name
    block.mkdir()
    (block / "parameters.json").write_text(
        json.dumps(
            {
                "version": 1,
                "info": {"name": name, "operatesOn": operates_on},
                "parameters": parameters or [],
            }
        )
    )
    header = (
        "import argparse, json, os, subprocess, sys, time\n"
        "parser = argparse.ArgumentParser()\n"
        "parser.add_argument('--out-directory', required=True)\n"
        "args, _ = parser.parse_known_args()\n"
        "out = args.out_directory\n"
    )
    (block / "transform.py").write_text(header + textwrap.dedent(code))
    return block


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_all_gone(pids: list[int]) -> None:
    for _ in range(50):  # SIGKILL is delivered at once; init reaps soon after
        if not any(_alive(p) for p in pids):
            return
        time.sleep(0.1)
    survivors = [p for p in pids if _alive(p)]
    for pid in survivors:  # do not leave them behind when the test fails
        os.kill(pid, 9)
    raise AssertionError(f"processes started by the block survived the run: {survivors}")


def read_pids(path: Path) -> list[int]:
    for _ in range(50):
        if path.exists() and path.read_text().strip():
            return [int(x) for x in path.read_text().split()]
        time.sleep(0.1)
    raise AssertionError(f"the block did not write {path}")


# --------------------------------------------------------------------------- runaway processes

GRANDCHILD_SAME_GROUP = """
p = subprocess.Popen(["sleep", "1000"])  # inherits stdout: holds the runner's pipe
open(os.path.join(out, "pids"), "w").write(str(p.pid))
print("left a grandchild behind", flush=True)
"""

# double fork + setsid: the grandchild leaves the block's process group and session
GRANDCHILD_SETSID = """
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(os.path.join(out, "pids"), "w") as fh:
            fh.write(str(os.getpid()))
        print("daemon holding stdout", flush=True)
        time.sleep(1000)
    os._exit(0)
os.wait()
time.sleep(0.5)
print("parent done", flush=True)
"""


RUNAWAYS = pytest.mark.parametrize(
    "code", [GRANDCHILD_SAME_GROUP, GRANDCHILD_SETSID], ids=["group", "setsid"]
)


@HANG
@RUNAWAYS
def test_grandchild_holding_stdout_does_not_hang_a_finished_block(
    tmp_path: Path, code: str
) -> None:
    block = make_block(tmp_path, code)
    out = tmp_path / "out"
    result = run_block(block, out_directory=out, time_limit=60)
    assert result.exit_code == 0
    assert_all_gone(read_pids(out / "pids"))
    assert "pids" in result.outputs


@HANG
@RUNAWAYS
def test_time_limit_bounds_a_block_whose_grandchild_holds_stdout(tmp_path: Path, code: str) -> None:
    block = make_block(tmp_path, code + "\ntime.sleep(1000)\n")
    out = tmp_path / "out"
    with pytest.raises(BlockTimeout, match="time limit of 3 s"):
        run_block(block, out_directory=out, time_limit=3)
    assert_all_gone(read_pids(out / "pids"))


@HANG
def test_block_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    block = make_block(
        tmp_path,
        """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(os.path.join(out, "pids"), "w").write(str(os.getpid()))
        print("ignoring SIGTERM", flush=True)
        while True:
            time.sleep(1)
        """,
    )
    with pytest.raises(BlockTimeout) as info:
        run_block(block, out_directory=tmp_path / "out", time_limit=2)
    assert "ignoring SIGTERM" in str(info.value)
    assert_all_gone(read_pids(tmp_path / "out" / "pids"))


# --------------------------------------------------------------------------- malformed files

NOT_UTF8 = b'{"version": 1, "action": "add", "metadata": {"k": "\xff\xfe"}}'
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (NOT_UTF8, "not UTF-8"),
        (DEEP, "nested"),
        (None, "not a regular file"),  # a folder named parameters.json
        (b'{"info": {}, "parameters": [], "x": NaN}', "not valid JSON"),
    ],
    ids=["not-utf8", "deep", "folder", "nan"],
)
def test_malformed_parameters_json_is_a_clear_error(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    block = make_block(tmp_path, "print('never runs')\n")
    path = block / "parameters.json"
    path.unlink()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        run_block(block, out_directory=tmp_path / "out")
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)
    assert not (tmp_path / "out").exists()


WRITE_METADATA = """
path = os.path.join(out, "ei-metadata.json")
content = {content!r}
if content is None:
    os.mkdir(path)
else:
    open(path, "wb").write(content)
"""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (NOT_UTF8, "not UTF-8"),
        (DEEP, "nested"),
        (None, "not a regular file"),
        (b"x" * (MAX_METADATA_BYTES + 1), "larger than"),
        (
            json.dumps(
                {
                    "version": 1,
                    "action": "add",
                    "metadata": {f"k{i}": "v" for i in range(MAX_KEYS + 1)},
                }
            ).encode(),
            f"more than {MAX_KEYS} keys",
        ),
    ],
    ids=["not-utf8", "deep", "folder", "too-big", "too-many-keys"],
)
def test_malformed_ei_metadata_is_a_clear_error(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    block = make_block(tmp_path, WRITE_METADATA.format(content=content))
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        run_block(block, out_directory=out)
    assert str(info.value).startswith(str(out / "ei-metadata.json"))
    assert message in str(info.value)


# --------------------------------------------------------------------------- out-directory escapes


def test_symlink_output_leaving_the_out_directory_is_refused(tmp_path: Path) -> None:
    block = make_block(tmp_path, "os.symlink('/etc/passwd', os.path.join(out, 'passwd'))\n")
    with pytest.raises(BlockError) as info:
        run_block(block, out_directory=tmp_path / "out")
    assert str(tmp_path / "out" / "passwd") in str(info.value)
    assert "leaves the out-directory" in str(info.value)


def test_ei_metadata_symlink_elsewhere_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"version": 1, "action": "replace", "metadata": {"a": "b"}}))
    block = make_block(
        tmp_path, f"os.symlink({str(elsewhere)!r}, os.path.join(out, 'ei-metadata.json'))\n"
    )
    with pytest.raises(BlockError) as info:
        run_block(block, out_directory=tmp_path / "out", metadata={"keep": "me"})
    assert str(tmp_path / "out" / "ei-metadata.json") in str(info.value)
    assert "leaves the out-directory" in str(info.value)


def test_item_folder_symlink_to_parent_is_refused(tmp_path: Path) -> None:
    # OUT/<item>/ei-metadata.json through OUT/up -> .. would read ../ei-metadata.json
    (tmp_path / "ei-metadata.json").write_text(
        json.dumps({"version": 1, "action": "add", "metadata": {"x": "y"}})
    )
    block = make_block(tmp_path, "os.symlink('..', os.path.join(out, 'up'))\n")
    with pytest.raises(BlockError) as info:
        run_block(block, out_directory=tmp_path / "out")
    assert str(tmp_path / "out" / "up") in str(info.value)


def test_files_written_outside_are_not_outputs_and_inside_links_are_kept(tmp_path: Path) -> None:
    block = make_block(
        tmp_path,
        """
        open(os.path.join(out, "..", "x"), "w").write("outside")
        os.makedirs(os.path.join(out, "sub"))
        open(os.path.join(out, "sub", "a.csv"), "w").write("a")
        os.symlink("sub/a.csv", os.path.join(out, "alias.csv"))
        os.symlink("sub", os.path.join(out, "subdir-link"))
        """,
    )
    result = run_block(block, out_directory=tmp_path / "out")
    assert result.outputs == ("alias.csv", "sub/a.csv")


# --------------------------------------------------------------------------- secrets


def test_secrets_are_masked_in_everything_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGELOOP_API_KEY", "ei_0123456789abcdef")
    block = make_block(
        tmp_path,
        """
        print("token is", os.environ["API_TOKEN"], flush=True)
        print("api key is", os.environ["EI_API_KEY"], flush=True)
        print("argv", " ".join(sys.argv[1:]), flush=True)
        sys.exit(3)
        """,
        parameters=[{"name": "Token", "type": "secret", "param": "api-token"}],
    )
    lines: list[str] = []
    caplog.set_level(logging.DEBUG, logger="edgeloop")
    with pytest.raises(BlockFailed) as info:
        run_block(
            block,
            out_directory=tmp_path / "out",
            params={"api-token": "hunter2-secret"},
            hmac_key="hmac-very-secret",
            on_line=lines.append,
        )
    everything = caplog.text + "\n".join(lines) + str(info.value)
    for secret in ("hunter2-secret", "ei_0123456789abcdef", "hmac-very-secret"):
        assert secret not in everything
    assert "token is ***" in caplog.text and "api key is ***" in caplog.text
    assert "--hmac-key ***" in caplog.text  # the logged command line
    assert "token is ***" in str(info.value)


def test_hmac_key_is_kept_out_of_the_result_command(tmp_path: Path) -> None:
    block = make_block(tmp_path, "print('ok')\n")
    result = run_block(block, out_directory=tmp_path / "out", hmac_key="k3y-value")
    assert "k3y-value" not in " ".join(result.command)
    assert result.command[result.command.index("--hmac-key") + 1] == "***"


# --------------------------------------------------------------------------- unbounded output


@HANG
def test_huge_line_without_newline_is_truncated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    block = make_block(
        tmp_path,
        """
        chunk = "y" * (1024 * 1024)
        for _ in range(20):
            sys.stdout.write(chunk)
        sys.stdout.write("\\nafter\\n")
        sys.stdout.write("z" * (1024 * 1024))
        sys.stdout.flush()
        """,
    )
    lines: list[str] = []
    caplog.set_level(logging.INFO, logger="edgeloop")
    result = run_block(block, out_directory=tmp_path / "out", on_line=lines.append)
    assert len(lines) == 3
    assert lines[1] == "after"
    for long in (lines[0], lines[2]):
        assert long.endswith(f"[line truncated at {MAX_LINE_BYTES} bytes]")
        assert len(long) < MAX_LINE_BYTES + 100
    assert max(len(m) for m in caplog.messages) < MAX_LINE_BYTES + 200
    assert result.output_tail[1] == "after"


@HANG
def test_the_sweep_leaves_other_processes_alone(tmp_path: Path) -> None:
    """Only the block's group and the processes carrying its run's marker are killed."""
    import subprocess

    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        block = make_block(tmp_path, GRANDCHILD_SETSID)
        run_block(block, out_directory=tmp_path / "out", time_limit=60)
        assert_all_gone(read_pids(tmp_path / "out" / "pids"))
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
