"""`make up`: Airflow (`airflow standalone`) and a local S3 server with the demo bucket.

The same environment as `make demo` — the Airflow home ``$AIRFLOW_HOME`` (default
``.airflow``), SQLite, LocalExecutor, the repo's ``dags/`` and ``plugins/`` —
with the web UI on http://localhost:8080 (``EDGELOOP_UI_PORT`` to change it) and
``s3://edgeloop-demo/digits/`` filled with the digits PNGs. The login is printed.
Runs until Ctrl-C, then stops both. Airflow's output goes to
``$AIRFLOW_HOME/standalone.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from edgeloop.errors import EdgeloopError
from edgeloop_dev.devenv import (
    ADMIN_USER,
    REPO_ROOT,
    CommandError,
    S3Server,
    admin_password,
    airflow_environ,
    bin_path,
    run_logged,
    s3_connection_environ,
    tail,
    upload_digits,
    wait_http,
    write_env_file,
)

BUCKET = "edgeloop-demo"
PREFIX = "digits/"
CONN_ID = "edgeloop_demo_s3"


def say(text: str = "") -> None:
    print(text, flush=True)


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_standalone(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT lets `airflow standalone` stop its components; then its process group.

    It runs in its own session (process group id = its pid), so whatever it left
    behind is found and stopped by that id.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            say("airflow standalone did not stop within 45 s; terminating its process group")
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if not _group_alive(proc.pid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    if proc.poll() is None:
        proc.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _default_sigint() -> None:  # in the child, before exec: Ctrl-C semantics even if
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # we were started with SIGINT ignored


def main() -> int:
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or REPO_ROOT / ".airflow").resolve()
    port = int(os.environ.get("EDGELOOP_UI_PORT", "8080"))
    log_path = airflow_home / "standalone.log"
    env = {**os.environ, **airflow_environ(airflow_home, api_port=port)}
    # `airflow standalone` starts its components as `airflow ...` from PATH.
    env["PATH"] = str(Path(bin_path("airflow")).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if port_in_use(port):
        say(f"error: port {port} is already in use; stop what runs there or set EDGELOOP_UI_PORT")
        return 2
    server: S3Server | None = None
    airflow: subprocess.Popen[bytes] | None = None
    try:
        say(f"Airflow home {airflow_home}: airflow db migrate ...")
        run_logged([bin_path("airflow"), "db", "migrate"], env=env, log_path=log_path, timeout=600)
        run_logged([bin_path("edgeloop"), "db", "upgrade"], env=env, log_path=log_path)
        server = S3Server(log_path=airflow_home / "s3-server.log").start()
        conn = s3_connection_environ(CONN_ID, server.endpoint)
        env.update(conn)
        write_env_file(
            airflow_home / "env.sh", {**airflow_environ(airflow_home, api_port=port), **conn}
        )
        keys = upload_digits(server.client(), BUCKET, PREFIX, per_label=20, unlabeled=10)
        say(
            f"local S3 server {server.endpoint}: {len(keys)} digit PNGs in "
            f"s3://{BUCKET}/{PREFIX} (Airflow connection {CONN_ID})"
        )
        # The research pipeline's source (include/pipelines/health-study.json).
        from demo_health import BUCKET as STUDY_BUCKET
        from demo_health import upload_study

        subjects = upload_study(server.client())
        say(f"  and a health study of {len(subjects)} subjects in s3://{STUDY_BUCKET}/")

        say(f"starting airflow standalone (output in {log_path}) ...")
        with open(log_path, "ab") as out:
            airflow = subprocess.Popen(
                [bin_path("airflow"), "standalone"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_default_sigint,
            )
        url = f"http://localhost:{port}"
        deadline = time.monotonic() + 240
        while True:
            if airflow.poll() is not None:
                raise EdgeloopError(f"airflow standalone exited with {airflow.returncode}")
            try:
                wait_http(f"{url}/api/v2/monitor/health", timeout=2)
                break
            except EdgeloopError:
                if time.monotonic() > deadline:
                    raise
        say("")
        say(f"  Airflow UI:  {url}")
        say(f"  login:       {ADMIN_USER} / {admin_password(airflow_home)}")
        say(f"  S3 endpoint: {server.endpoint} (access key testing, secret testing)")
        say(f"  pipelines:   {env['EDGELOOP_PIPELINES_DIR']} (one DAG per config file)")
        say(f"  shell:       source {airflow_home}/env.sh")
        say("               (then .venv/bin/airflow dags list, .venv/bin/edgeloop summary demo)")
        say("  see docs/running.md to trigger runs from the UI or the REST API")
        say("")
        say("Press Ctrl-C to stop Airflow and the S3 server.")
        while airflow.poll() is None:
            time.sleep(1)
        say(f"airflow standalone exited with {airflow.returncode}; last lines of {log_path}:")
        say(tail(log_path, 40))
        return 1
    except KeyboardInterrupt:
        say("\nstopping ...")
        return 0
    except (CommandError, EdgeloopError, subprocess.TimeoutExpired) as exc:
        say(f"FAILED: {exc}\n--- last lines of {log_path} ---\n{tail(log_path, 40)}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        if airflow is not None:
            stop_standalone(airflow)
        if server is not None:
            server.stop()
        say("stopped.")


if __name__ == "__main__":
    sys.exit(main())
