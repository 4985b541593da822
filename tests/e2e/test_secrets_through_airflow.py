"""An inline encrypted S3 secret works through Airflow and its plaintext appears
nowhere: not in task logs, XCom, rendered templates (all in the Airflow home and
its metadata DB) nor in the catalog or blob store."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from edgeloop_dev.devenv import bin_path

pytestmark = pytest.mark.slow


def test_secret_never_leaks(airflow_env, s3_server) -> None:
    secret = f"plain-{uuid.uuid4().hex}"
    token = subprocess.run(
        [bin_path("edgeloop"), "encrypt-secret"],
        input=secret,
        capture_output=True,
        text=True,
        env=airflow_env.env,
        check=True,
    ).stdout.strip()
    assert token and secret not in token
    client = s3_server.client()
    client.create_bucket(Bucket="secret-e2e")
    client.put_object(Bucket="secret-e2e", Key="in/cat/1.png", Body=b"png bytes")
    airflow_env.add_pipeline(
        "secret.json",
        {
            "id": "secret_e2e",
            "name": "inline credentials",
            "project": "secret_e2e",
            "steps": [
                {
                    "name": "import",
                    "builtinTransformationBlock": {
                        "type": "s3-to-project",
                        "path": "s3://secret-e2e/in/",
                        "endpoint": s3_server.endpoint,
                        "region": "us-east-1",
                        "accessKey": "AKIAEDGELOOPTEST",
                        "secretKeyEncrypted": token,
                    },
                }
            ],
        },
    )
    airflow_env.airflow("dags", "test", "secret_e2e")
    summary = json.loads(airflow_env.edgeloop("summary", "secret_e2e", "--json"))
    assert summary["sync"]["new"] == 1

    # the task logs were captured: the sync's own log line is there
    assert b"syncing s3://secret-e2e/in/ into project secret_e2e" in airflow_env.log.read_bytes()
    needle = secret.encode()
    root = airflow_env.log.parent  # the Airflow home, its DB, the edgeloop home, the logs
    searched = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "airflow.db" for p in searched)
    for path in searched:
        assert needle not in path.read_bytes(), f"the secret leaked into {path}"
