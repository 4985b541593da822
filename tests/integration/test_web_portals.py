"""Upload portals against a real S3-compatible server (moto, over HTTP) through the
plugin's app: the link's token opens only its own portal, while live; uploads of files and
folders land under the portal's bucket path; identical content is skipped, a same-name
file with new content replaces the old; there is no listing, download or delete."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import now
from edgeloop.web.app import create_app
from edgeloop.web.portals import create_portal, revoke_portal
from edgeloop_dev.devenv import s3_connection_environ

CONN = "portal_s3"


@pytest.fixture
def env(edgeloop_home: Path, s3_server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch):
    for k, v in s3_connection_environ(CONN, s3_server.endpoint).items():
        monkeypatch.setenv(k, v)
    client = TestClient(create_app(authenticate=False, emit_asset_event=lambda p, e: True))
    return client, Catalog.from_settings(), s3_bucket


def _keys(s3_client, bucket: str) -> dict[str, bytes]:
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        o["Key"]: s3_client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed
    }


def test_cli_prints_a_link_with_the_token(env, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeloop.cli import main

    client, _, bucket = env
    code = main(
        ["portal", "create", "Lab A", "--description", "Polar H10 exports",
         "--bucket-path", f"s3://{bucket}/portal-a", "--conn-id", CONN, "--base-url", "http://ui:8080"]
    )  # fmt: skip
    assert code == 0
    link = capsys.readouterr().out.strip().splitlines()[-1]
    m = re.fullmatch(r"http://ui:8080/edgeloop(/portal/\d+)\?token=(\S+)", link)
    assert m, link
    page = client.get(f"{m[1]}?token={m[2]}")
    assert page.status_code == 200 and "Polar H10 exports" in page.text
    assert "Drop files or folders" in page.text


def test_token_checks(env) -> None:
    client, catalog, bucket = env
    a, token_a = create_portal(catalog, "a", bucket_path=f"s3://{bucket}/a", conn_id=CONN)
    b, token_b = create_portal(catalog, "b", bucket_path=f"s3://{bucket}/b", conn_id=CONN)
    old, token_old = create_portal(
        catalog,
        "old",
        bucket_path=f"s3://{bucket}/old",
        conn_id=CONN,
        expires_at=now() - timedelta(seconds=1),
    )
    files = [("files", ("x.csv", b"1,2\n", "text/csv"))]

    def upload(portal_id: int, token: str | None):
        query = f"?token={token}" if token is not None else ""
        return client.post(f"/portal/{portal_id}/files{query}", files=files)

    assert client.get(f"/portal/{a['id']}?token={token_a}").status_code == 200
    for portal_id, token, status in [
        (a["id"], None, 401),  # no token
        (a["id"], token_b, 403),  # another portal's token
        (a["id"], "forged", 403),
        (old["id"], token_old, 403),  # expired
        (999, token_a, 404),
    ]:
        page = client.get(f"/portal/{portal_id}" + (f"?token={token}" if token else ""))
        assert page.status_code == status, (portal_id, token)
        r = upload(portal_id, token)
        assert r.status_code == status
        if status != 404:
            assert r.json()["detail"][0]["loc"] == ["query", "token"]
    revoke_portal(catalog, "a")
    assert upload(a["id"], token_a).status_code == 403
    assert "revoked" in upload(a["id"], token_a).json()["detail"][0]["msg"]
    assert upload(b["id"], token_b).status_code == 200
    assert set(_keys(client_s3(env), bucket)) == {"b/x.csv"}  # refused uploads wrote nothing


def client_s3(env):
    from edgeloop.web.portals import s3_client

    return s3_client(CONN)


def test_uploads_files_and_folders(env) -> None:
    client, catalog, bucket = env
    portal, token = create_portal(
        catalog, "study", bucket_path=f"s3://{bucket}/study/in/", conn_id=CONN
    )
    url = f"/portal/{portal['id']}/files?token={token}"
    r = client.post(
        url,
        files=[
            ("files", ("polar_h10.csv", b"hr\n61\n", "text/csv")),
            ("files", ("labels.csv", b"label\nsit\n", "text/csv")),
            ("files", ("notes.txt", b"n", "text/plain")),
        ],
        data={"paths": ["AMS_001/polar_h10.csv", "AMS_001/labels.csv", "notes.txt"]},
    )
    assert r.status_code == 200, r.text
    assert [(f["path"], f["outcome"]) for f in r.json()["files"]] == [
        ("AMS_001/polar_h10.csv", "new"),
        ("AMS_001/labels.csv", "new"),
        ("notes.txt", "new"),
    ]
    s3 = client_s3(env)
    assert _keys(s3, bucket) == {
        "study/in/AMS_001/polar_h10.csv": b"hr\n61\n",
        "study/in/AMS_001/labels.csv": b"label\nsit\n",
        "study/in/notes.txt": b"n",
    }
    # identical content is skipped; a same-name file with new content replaces the old
    r = client.post(
        url,
        files=[
            ("files", ("polar_h10.csv", b"hr\n61\n", "x")),
            ("files", ("labels.csv", b"label\nrun\n", "x")),
        ],
        data={"paths": ["AMS_001/polar_h10.csv", "AMS_001/labels.csv"]},
    )
    assert [f["outcome"] for f in r.json()["files"]] == ["unchanged", "replaced"]
    assert _keys(s3, bucket)["study/in/AMS_001/labels.csv"] == b"label\nrun\n"
    # a path out of the portal is refused, naming the field
    r = client.post(url, files=[("files", ("x", b"x", "x"))], data={"paths": ["../../etc/x"]})
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["body", "paths", "0"]
    # no listing, no download, no delete
    assert client.get(url).status_code == 405
    assert client.delete(url).status_code == 405
    assert client.get(f"/portal/{portal['id']}/files/notes.txt?token={token}").status_code == 404
