"""docker-compose.yaml: valid against the Compose specification, on the official Airflow 3
architecture, and the native distributed run (make up-distributed) uses its settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeloop_dev.distributed import (
    LocalPeers,
    common_environment,
    interpolate,
    load_compose,
    native_environ,
)

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO.parent / "shared" / "vendor" / "compose-spec.json"
SECRETS = {"AIRFLOW_FERNET_KEY": "f", "AIRFLOW_JWT_SECRET": "j", "AIRFLOW_API_SECRET_KEY": "s"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(REPO / "docker-compose.yaml")


def test_valid_against_the_compose_specification(compose: dict) -> None:
    if not SPEC.exists():
        pytest.fail(f"the Compose specification schema is expected at {SPEC}")
    from jsonschema import Draft7Validator

    errors = sorted(
        Draft7Validator(json.loads(SPEC.read_text())).iter_errors(compose),
        key=lambda e: e.json_path,
    )
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_official_airflow_services_and_conditions(compose: dict) -> None:
    services = compose["services"]
    for name in (
        "postgres",
        "redis",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "minio",
        "minio-init",
        "mailpit",
    ):
        assert name in services, name
    commands = {n: s.get("command") for n, s in services.items()}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-worker"] == "celery worker"
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "postgres",
        "redis",
        "minio",
    ):
        assert "healthcheck" in services[name], name
        if name.startswith("airflow-"):
            deps = services[name]["depends_on"]
            assert deps["airflow-init"]["condition"] == "service_completed_successfully"
            assert deps["postgres"]["condition"] == "service_healthy"
            assert deps["redis"]["condition"] == "service_healthy"
    assert "edgeloop db upgrade" in services["airflow-init"]["command"][1]
    mounts = compose["x-airflow-common"]["volumes"]
    for folder in ("dags", "plugins", "include"):
        assert f"./{folder}:/opt/airflow/{folder}" in mounts


def test_executor_databases_broker_and_shared_secrets(compose: dict) -> None:
    env = common_environment(compose)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-apiserver:8080/execution/"
    )
    assert env["EDGELOOP_CATALOG_URL"].startswith("postgresql+psycopg2://")
    assert env["EDGELOOP_BLOB_ROOT"].startswith("s3://")
    # One JWT secret and Fernet key for every component: from .env, required.
    for key, var in (
        ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET"),
    ):
        assert env[key].startswith("${" + var + ":?")
    # Every service that runs Airflow merges the same common environment.
    for name, service in compose["services"].items():
        if name.startswith("airflow-"):
            assert (
                service["environment"].items() >= env.items() if "environment" in service else True
            )


def test_the_native_run_uses_the_compose_settings(compose: dict, tmp_path: Path) -> None:
    peers = LocalPeers(
        metadata_db="meta_x",
        catalog_db="cat_x",
        api_port=18080,
        s3_endpoint="http://127.0.0.1:19000",
        smtp="127.0.0.1:11025",
    )
    native = native_environ(compose, peers, home=tmp_path, secrets=SECRETS)
    compose_env = common_environment(compose)
    assert set(compose_env) <= set(native)
    assert native["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert native["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://postgres@127.0.0.1:5432/meta_x"
    )
    assert native["AIRFLOW__CELERY__RESULT_BACKEND"] == (
        "db+postgresql://postgres@127.0.0.1:5432/meta_x"
    )
    assert native["EDGELOOP_CATALOG_URL"] == "postgresql+psycopg2://postgres@127.0.0.1:5432/cat_x"
    assert native["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert native["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://127.0.0.1:18080/execution/"
    )
    assert native["AIRFLOW__CORE__FERNET_KEY"] == "f"
    assert native["AIRFLOW__API_AUTH__JWT_SECRET"] == "j"
    assert native["EDGELOOP_PIPELINES_DIR"] == str(REPO / "include" / "pipelines")
    assert native["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags")
    blobs = json.loads(native["AIRFLOW_CONN_EDGELOOP_BLOBS"])
    assert blobs["extra"]["endpoint_url"] == "http://127.0.0.1:19000"
    smtp = json.loads(native["AIRFLOW_CONN_SMTP_DEFAULT"])
    assert (smtp["host"], smtp["port"]) == ("127.0.0.1", 11025)
    # Everything else is taken verbatim from the compose file.
    rewritten = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__API__BASE_URL",
        "EDGELOOP_CATALOG_URL",
        "EDGELOOP_PIPELINES_DIR",
        "EDGELOOP_HOME",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    }
    for key, raw in compose_env.items():
        if key in rewritten or key.startswith("AIRFLOW_CONN_"):
            continue
        assert native[key] == interpolate(raw, SECRETS), key


def test_interpolation_rules() -> None:
    assert interpolate("${A:-x}/${B}", {"B": "b"}) == "x/b"
    assert interpolate("$${HOSTNAME}", {}) == "${HOSTNAME}"
    with pytest.raises(Exception, match="set it"):
        interpolate("${A:?set it}", {})
