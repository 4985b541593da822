"""Local peers for the demo, the tests and the benchmarks: real server processes
on 127.0.0.1, started and stopped by the caller, and an isolated Airflow home.

Nothing here is imported at DAG parse time; heavy libraries (boto3, Pillow,
scikit-learn) are imported inside the functions that need them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from edgeloop.errors import EdgeloopError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_USER = "admin"
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
SECRETS_FILE = "edgeloop_dev_secrets.json"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Wait until `url` answers any HTTP status."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise EdgeloopError(f"{url} did not answer within {timeout:.0f} s: {exc}") from exc
            time.sleep(0.1)


class S3Server:
    """moto's S3-compatible server as a separate process on 127.0.0.1.

    It speaks the real S3 REST protocol over HTTP; state lives in the process.
    """

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        exe = Path(sys.executable).with_name("moto_server")
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_http(self.endpoint + "/moto-api/")
        return self

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def client(self):  # -> botocore S3 client; boto3 imported lazily
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# Airflow home


def _home_secrets(airflow_home: Path) -> dict[str, str]:
    """The fernet key and the API signing secrets of this home, made once and kept.

    They must stay the same across processes (scheduler, api-server, `dags test`)
    and across runs, or encrypted connections and issued tokens stop working.
    """
    path = airflow_home / SECRETS_FILE
    if path.exists():
        return json.loads(path.read_text())
    from cryptography.fernet import Fernet

    values = {
        "fernet_key": Fernet.generate_key().decode(),
        "jwt_secret": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "secret_key": secrets.token_urlsafe(32),
    }
    airflow_home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(values, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    log.info("generated the fernet key and API secrets in %s", path)
    return values


def admin_password(airflow_home: Path) -> str:
    """The password of the ``admin`` user of the simple auth manager of this home.

    Generated on first use and kept in ``<home>/simple_auth_manager_passwords.json``
    (the simple auth manager's own passwords file), so it is stable and visible.
    """
    path = airflow_home / PASSWORDS_FILE
    passwords: dict[str, str] = {}
    if path.exists() and path.read_text().strip():
        passwords = json.loads(path.read_text())
    if ADMIN_USER not in passwords:
        passwords[ADMIN_USER] = secrets.token_urlsafe(12)
        airflow_home.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(passwords) + "\n")
        path.chmod(0o600)
    return passwords[ADMIN_USER]


def airflow_environ(
    airflow_home: Path,
    *,
    pipelines_dir: Path | None = None,
    edgeloop_home: Path | None = None,
    api_port: int = 8080,
) -> dict[str, str]:
    """Environment variables for an isolated Airflow home (merge into ``os.environ``).

    SQLite metadata DB and LocalExecutor in the home, examples off, DAGs from
    ``<repo>/dags``, plugins from ``<repo>/plugins``, a fernet key kept in the home,
    the simple auth manager with one ``admin`` user whose password is in
    ``<home>/simple_auth_manager_passwords.json``, and edgeloop's own home under
    ``<home>/edgeloop``. Only the variables set here change; the rest of the
    caller's environment is untouched.
    """
    airflow_home = Path(airflow_home).resolve()
    airflow_home.mkdir(parents=True, exist_ok=True)
    keys = _home_secrets(airflow_home)
    admin_password(airflow_home)
    if pipelines_dir is None:
        pipelines_dir = Path(
            os.environ.get("EDGELOOP_PIPELINES_DIR") or REPO_ROOT / "include" / "pipelines"
        )
    edgeloop_home = Path(edgeloop_home or airflow_home / "edgeloop").resolve()
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_home / PASSWORDS_FILE),
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
        # A task started while the api-server is still coming up (slow on 2 cores, and a
        # scheduled run starts at once) retries its execution-API calls for ~5 min
        # instead of ~15 s before it is killed.
        "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
        # Pick up a new pipeline config within half a minute.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "15",
        "EDGELOOP_HOME": str(edgeloop_home),
        "EDGELOOP_PIPELINES_DIR": str(Path(pipelines_dir).resolve()),
    }


def write_env_file(path: Path, variables: Mapping[str, str]) -> Path:
    """Write ``export NAME=value`` lines (for ``source``) so a shell gets the same setup.

    The file holds the home's keys: it is made readable by its owner only.
    """
    import shlex

    lines = [
        "# generated by edgeloop (scripts/demo.py, scripts/up.py): `source` this file",
        *(f"export {k}={shlex.quote(v)}" for k, v in sorted(variables.items())),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def s3_connection_environ(
    conn_id: str,
    endpoint: str,
    region: str = "us-east-1",
    access_key: str = "testing",
    secret_key: str = "testing",
) -> dict[str, str]:
    """An Airflow AWS connection to an S3-compatible endpoint, as an environment variable."""
    value = {
        "conn_type": "aws",
        "login": access_key,
        "password": secret_key,
        "extra": {"endpoint_url": endpoint, "region_name": region},
    }
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(value)}


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file (empty if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class CommandError(EdgeloopError):
    """A command of the local environment (airflow, edgeloop) failed."""

    def __init__(self, argv: Sequence[str], returncode: int, log_path: Path | None) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.log_path = log_path
        where = f"; log: {log_path}" if log_path else ""
        super().__init__(f"`{' '.join(argv)}` exited with {returncode}{where}")


def run_logged(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float | None = None,
    check: bool = True,
) -> int:
    """Run a command with its output appended to `log_path`; return its exit code.

    Raise CommandError (naming the log) on a non-zero exit when `check`.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.run(
            list(argv),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, log_path)
    return proc.returncode


def bin_path(name: str) -> str:
    """A console script of the running virtualenv (airflow, edgeloop, aws, moto_server)."""
    return str(Path(sys.executable).with_name(name))


# --------------------------------------------------------------------------------------
# Demo data


def _digit_png(image) -> bytes:  # image: 8x8 float array, values 0..16
    import io

    import numpy as np
    from PIL import Image

    pixels = np.clip(np.rint(image * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _load_digits():  # -> (images: (n, 8, 8) float array 0..16, target: (n,) int array)
    """scikit-learn's bundled digits, read from its data file without importing
    scikit-learn (whose import takes seconds); ``load_digits`` if the file moved."""
    import gzip
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if path.exists():
            with gzip.open(path, "rt") as f:
                data = np.loadtxt(f, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def digit_objects(
    per_label: int = 20, unlabeled: int = 10, start: int = 0, prefix: str = ""
) -> dict[str, bytes]:
    """scikit-learn's bundled handwritten digits as PNG files, laid out as in the seed.

    ``<prefix><digit>/<digit>.<index>.png`` for ``per_label`` images of each digit,
    taken from position ``start`` of that digit's images, and
    ``<prefix>unlabeled/<digit>.<index>.png`` for ``unlabeled`` images drawn from a
    pool the labeled folders never use (position ``start`` of the pool onwards).
    ``<index>`` is the image's index in the dataset, so keys never collide and
    every image of the dataset is distinct content. Returns key -> PNG bytes.
    """
    import numpy as np

    images, target = _load_digits()
    n = len(target)
    pool_size = 100  # the last images of the dataset feed unlabeled/
    pool = list(range(n - pool_size, n))
    by_label = {
        int(d): [int(i) for i in np.flatnonzero(target[: n - pool_size] == d)] for d in range(10)
    }
    capacity = min(len(v) for v in by_label.values())
    if start < 0 or per_label < 0 or start + per_label > capacity:
        raise EdgeloopError(
            f"digits: start + per_label must be within 0..{capacity}, got {start} + {per_label}"
        )
    if unlabeled < 0 or start + unlabeled > pool_size:
        raise EdgeloopError(
            f"digits: start + unlabeled must be within 0..{pool_size}, got {start} + {unlabeled}"
        )
    objects: dict[str, bytes] = {}
    for label, indices in by_label.items():
        for i in indices[start : start + per_label]:
            objects[f"{prefix}{label}/{label}.{i:05d}.png"] = _digit_png(images[i])
    for i in pool[start : start + unlabeled]:
        objects[f"{prefix}unlabeled/{target[i]}.{i:05d}.png"] = _digit_png(images[i])
    return objects


def put_objects(s3_client, bucket: str, objects: Mapping[str, bytes], *, workers: int = 16) -> None:
    """Upload key -> bytes to `bucket` concurrently."""
    from concurrent.futures import ThreadPoolExecutor

    def put(item: tuple[str, bytes]) -> None:
        s3_client.put_object(Bucket=bucket, Key=item[0], Body=item[1])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, objects.items()))


def upload_digits(
    s3_client,
    bucket: str,
    prefix: str = "digits/",
    *,
    per_label: int = 20,
    unlabeled: int = 10,
    start: int = 0,
    create_bucket: bool = True,
) -> list[str]:
    """Write digits PNGs (see `digit_objects`) under ``s3://bucket/prefix``.

    Creates the bucket if needed. Returns the keys written, sorted.
    """
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if create_bucket:
        from botocore.exceptions import ClientError

        try:
            s3_client.head_bucket(Bucket=bucket)
        except ClientError:
            s3_client.create_bucket(Bucket=bucket)
    objects = digit_objects(per_label=per_label, unlabeled=unlabeled, start=start, prefix=prefix)
    put_objects(s3_client, bucket, objects)
    log.info("uploaded %s digit PNGs to s3://%s/%s", len(objects), bucket, prefix)
    return sorted(objects)
