"""`make up-distributed`: the docker-compose.yaml topology as processes on this machine.

api-server, scheduler, dag-processor, triggerer and two Celery workers (CeleryExecutor),
the metadata DB and the edgeloop catalog in fresh databases on the local PostgreSQL
server, the broker on the local Redis, the blob store and the demo bucket on a local S3
server (moto, for MinIO), SMTP on a local aiosmtpd (for Mailpit). The settings are the
compose file's (tools/edgeloop_dev/distributed.py). Runs until Ctrl-C, then stops all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgeloop.errors import EdgeloopError
from edgeloop_dev.devenv import (
    REPO_ROOT,
    CommandError,
    S3Server,
    free_port,
    upload_digits,
    write_env_file,
)
from edgeloop_dev.distributed import (
    DistributedStack,
    LocalPeers,
    admin_login,
    create_databases,
    load_compose,
    make_secrets,
    native_environ,
    smtp_server_argv,
)


def say(text: str = "") -> None:
    print(text, flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    home = Path(os.environ.get("EDGELOOP_DIST_HOME") or REPO_ROOT / ".airflow-distributed")
    home = home.resolve()
    port = int(os.environ.get("EDGELOOP_UI_PORT", "8080"))
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    s3 = S3Server(log_path=home / "s3-server.log")
    smtp: subprocess.Popen[bytes] | None = None
    stack: DistributedStack | None = None
    try:
        home.mkdir(parents=True, exist_ok=True)
        s3.start()
        peers = LocalPeers(
            metadata_db="edgeloop_dist_airflow",
            catalog_db="edgeloop_dist_catalog",
            redis_db=1,
            api_port=port,
            s3_endpoint=s3.endpoint,
            smtp=f"127.0.0.1:{free_port()}",
        )
        say(f"fresh PostgreSQL databases {peers.metadata_db} and {peers.catalog_db} ...")
        create_databases(peers)
        client = s3.client()
        for bucket in ("edgeloop-blobs", "edgeloop-demo"):
            client.create_bucket(Bucket=bucket)
        keys = upload_digits(client, "edgeloop-demo", "digits/", per_label=20, unlabeled=10)
        smtp_log = open(home / "smtp.log", "ab")  # noqa: SIM115
        smtp = subprocess.Popen(smtp_server_argv(peers), stdout=smtp_log, stderr=subprocess.STDOUT)
        env = {
            **os.environ,
            **native_environ(load_compose(), peers, home=home, secrets=make_secrets()),
        }
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        write_env_file(
            home / "env.sh", {k: v for k, v in env.items() if k.startswith(("AIRFLOW", "EDGELOOP"))}
        )
        stack = DistributedStack(home=home, env=env, workers=2)
        say("airflow db migrate, edgeloop db upgrade ...")
        stack.init()
        say("starting api-server, scheduler, dag-processor, triggerer, 2 Celery workers ...")
        stack.start()
        user, password = admin_login(env)
        say("")
        say(f"  Airflow UI:   {stack.api_url}  (CeleryExecutor, PostgreSQL, Redis)")
        say(f"  login:        {user} / {password}")
        say(
            f"  S3 (blobs):   {s3.endpoint}  s3://edgeloop-blobs/blobs; demo source "
            f"s3://edgeloop-demo/digits/ ({len(keys)} PNGs)"
        )
        say(f"  SMTP:         {peers.smtp} (messages in {home / 'smtp.log'})")
        say(f"  logs:         {stack.log_dir}")
        say(f"  shell:        source {home / 'env.sh'}")
        say("")
        say("Press Ctrl-C to stop everything.")
        while all(c.proc is not None and c.proc.poll() is None for c in stack.components):
            time.sleep(1)
        say("a component exited:\n" + stack.logs_tail())
        return 1
    except KeyboardInterrupt:
        say("\nstopping ...")
        return 0
    except (CommandError, EdgeloopError, OSError) as exc:
        say(f"FAILED: {exc}")
        if stack is not None:
            say(stack.logs_tail())
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
        if smtp is not None:
            smtp.terminate()
            smtp.wait()
        s3.stop()
        say("stopped.")


if __name__ == "__main__":
    sys.exit(main())
