"""The local environment the demo, `make up` and the e2e tests stand on."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from PIL import Image

from edgeloop.ingest.labeling import infer_label
from edgeloop_dev.devenv import admin_password, airflow_environ, digit_objects, upload_digits


def test_digits_are_real_pngs_laid_out_as_in_the_seed():
    objects = digit_objects(per_label=3, unlabeled=4, prefix="digits/")
    assert len(objects) == 3 * 10 + 4
    assert len({hashlib.sha256(b).hexdigest() for b in objects.values()}) == len(objects)
    labels = {}
    for key, body in objects.items():
        image = Image.open(io.BytesIO(body))
        assert (image.format, image.mode, image.size) == ("PNG", "L", (8, 8))
        label, category = infer_label(key[len("digits/") :], "infer-from-folder-name")
        assert category is None
        labels[label] = labels.get(label, 0) + 1
    assert labels == {**{str(d): 3 for d in range(10)}, None: 4}


def test_later_batches_are_new_content():
    first = digit_objects(per_label=20, unlabeled=10)
    more = digit_objects(per_label=2, unlabeled=2, start=20)
    assert not set(first) & set(more)
    sha = lambda objs: {hashlib.sha256(b).hexdigest() for b in objs.values()}  # noqa: E731
    assert not sha(first) & sha(more)


def test_digit_batches_out_of_range_are_refused():
    from edgeloop.errors import EdgeloopError

    with pytest.raises(EdgeloopError, match="per_label"):
        digit_objects(per_label=500)


def test_upload_digits_writes_the_objects(s3_client):
    keys = upload_digits(s3_client, "devenv-digits", "d/", per_label=1, unlabeled=1)
    listed = [o["Key"] for o in s3_client.list_objects_v2(Bucket="devenv-digits")["Contents"]]
    assert sorted(listed) == keys
    assert len(keys) == 11 and "d/unlabeled/" in keys[-1]


def test_airflow_environ_is_isolated_and_stable(tmp_path):
    env = airflow_environ(tmp_path / "home", pipelines_dir=tmp_path / "p")
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path}/home/airflow.db"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["EDGELOOP_HOME"] == str(tmp_path / "home" / "edgeloop")
    assert env["EDGELOOP_PIPELINES_DIR"] == str(tmp_path / "p")
    # The keys and the password are made once and kept.
    again = airflow_environ(tmp_path / "home")
    assert again["AIRFLOW__CORE__FERNET_KEY"] == env["AIRFLOW__CORE__FERNET_KEY"]
    assert again["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    password = admin_password(tmp_path / "home")
    stored = json.loads((tmp_path / "home" / "simple_auth_manager_passwords.json").read_text())
    assert stored == {"admin": password}
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].endswith(
        "simple_auth_manager_passwords.json"
    )
    from cryptography.fernet import Fernet

    Fernet(env["AIRFLOW__CORE__FERNET_KEY"])  # a valid key
    assert (tmp_path / "home" / "edgeloop_dev_secrets.json").stat().st_mode & 0o077 == 0
