"""The ingestion API and the device-output intake through FastAPI's TestClient on the
plugin's app, with a real catalog and blob store (``edgeloop_home``): every endpoint with
a good and a bad key, signed / unsigned / badly signed data in JSON and CBOR, the
threshold rule, and items landing like synced ones (dedup, labels, category)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cbor2
import pytest
from fastapi.testclient import TestClient

from edgeloop.catalog.store import Catalog
from edgeloop.web.app import create_app
from edgeloop.web.ingestion import ZERO_SIGNATURE, sign
from edgeloop.web.keys import create_api_key, revoke_api_keys, set_threshold

PNG = b"\x89PNG\r\n\x1a\n" + b"pixels"
DOC = {
    "protected": {"ver": "v1", "alg": "HS256", "iat": 1700000000},
    "signature": ZERO_SIGNATURE,
    "payload": {
        "device_name": "ac:87:a3:0a:2d:1b",
        "device_type": "DISCO-L475VG-IOT01A",
        "interval_ms": 10,
        "sensors": [{"name": "accX", "units": "m/s2"}, {"name": "accY", "units": "m/s2"}],
        "values": [[-9.81, 0.03], [-9.83, 0.04], [-9.12, 0.03]],
    },
}


@pytest.fixture
def env(edgeloop_home: Path):
    events: list[tuple[str, dict]] = []
    app = create_app(
        authenticate=False, emit_asset_event=lambda p, e: events.append((p, e)) or True
    )
    catalog = Catalog.from_settings()
    key = create_api_key(catalog, "proj")
    other = create_api_key(catalog, "other")
    return TestClient(app), catalog, key, other, events


def _items(catalog: Catalog, project: str = "proj") -> dict[str, dict]:
    return {i["name"]: i for i in catalog.list_items(project)}


def _loc(response) -> list[list]:
    return [d["loc"] for d in response.json()["detail"]]


@pytest.mark.parametrize("kind", ["training", "testing", "anomaly"])
def test_files_land_like_synced_items(env, kind: str) -> None:
    client, catalog, key, _, events = env
    h = {"x-api-key": key["api_key"]}
    r = client.post(
        f"/api/{kind}/files",
        headers=h,
        files=[
            ("files", ("cat.01.png", PNG, "image/png")),
            ("files", ("dog.01.png", PNG + b"d", "image/png")),
        ],
    )
    assert r.status_code == 200, r.text
    assert [(f["name"], f["outcome"], f["label"], f["category"]) for f in r.json()["files"]] == [
        ("cat.01.png", "new", "cat", kind),
        ("dog.01.png", "new", "dog", kind),
    ]
    items = _items(catalog)
    assert items["cat.01.png"]["source"] == f"api://{kind}/"
    assert items["cat.01.png"]["files"][0]["sha256"] == r.json()["files"][0]["sha256"]
    assert events == [("proj", {"via": f"api/{kind}/files", "items": 2})]

    # the same content under another name: one item per content and project
    r = client.post(f"/api/{kind}/files", headers=h, files=[("files", ("cat.02.png", PNG, "x"))])
    assert r.json()["files"][0]["outcome"] == "duplicate"
    assert r.json()["files"][0]["item_id"] == items["cat.01.png"]["id"]
    assert sorted(_items(catalog)) == ["cat.01.png", "dog.01.png"]
    # the same name with new content updates that item in place
    r = client.post(
        f"/api/{kind}/files", headers=h, files=[("files", ("cat.01.png", PNG + b"2", "x"))]
    )
    assert r.json()["files"][0]["outcome"] == "updated"
    assert _items(catalog)["cat.01.png"]["id"] == items["cat.01.png"]["id"]
    assert len(events) == 2  # duplicates change nothing: no event


def test_files_label_headers(env) -> None:
    client, catalog, key, _, _ = env
    h = {"x-api-key": key["api_key"]}
    r = client.post(
        "/api/training/files",
        headers={**h, "x-label": " wave\x07/hand "},
        files=[("files", ("a.png", PNG + b"1", "x"))],
    )
    assert r.json()["files"][0]["label"] == "wave_hand"  # the sync's safe labels
    r = client.post(
        "/api/training/files",
        headers={**h, "x-no-label": "1", "x-add-date-id": "true"},
        files=[("files", ("b.png", PNG + b"2", "x"))],
    )
    f = r.json()["files"][0]
    assert f["label"] is None and f["name"].startswith("b.") and f["name"].endswith(".png")
    assert f["name"] != "b.png"
    # x-disallow-duplicates refuses a duplicate with 409 naming the file; nothing is stored
    r = client.post(
        "/api/training/files",
        headers={**h, "x-disallow-duplicates": "1"},
        files=[("files", ("new.png", PNG + b"3", "x")), ("files", ("c.png", PNG + b"1", "x"))],
    )
    assert r.status_code == 409
    assert _loc(r) == [["body", "files", "c.png"]]
    assert "new.png" not in _items(catalog)


def test_files_bad_input_names_the_field(env) -> None:
    client, _, key, _, _ = env
    h = {"x-api-key": key["api_key"]}
    r = client.post("/api/training/files", headers=h)
    assert r.status_code == 422 and _loc(r) == [["body", "files"]]
    r = client.post("/api/elsewhere/files", headers=h, files=[("files", ("a.png", PNG, "x"))])
    assert r.status_code == 422 and _loc(r) == [["path", "kind"]]
    r = client.post(
        "/api/training/files",
        headers={**h, "x-no-label": "maybe"},
        files=[("files", ("a.png", PNG, "x"))],
    )
    assert r.status_code == 422 and _loc(r) == [["header", "x-no-label"]]
    r = client.post("/api/training/files", headers=h, files=[("files", ("/..", PNG, "x"))])
    assert r.status_code == 400 and _loc(r) == [["body", "files", "0", "filename"]]


@pytest.mark.parametrize(
    "path,kwargs",
    [
        ("/api/training/files", {"files": [("files", ("a.png", PNG, "x"))]}),
        ("/api/testing/data", {"content": json.dumps(DOC)}),
        (
            "/api/device-output",
            {
                "json": {
                    "device_id": "d",
                    "model_id": "m",
                    "output_tensors": [{"shape": [2], "data": [0.5, 0.5]}],
                }
            },
        ),
    ],
)
def test_every_endpoint_refuses_bad_keys(env, path: str, kwargs: dict) -> None:
    client, catalog, key, _, _ = env
    assert client.post(path, **kwargs).status_code == 401
    r = client.post(path, headers={"x-api-key": "el_not-a-key"}, **kwargs)
    assert r.status_code == 401 and _loc(r) == [["header", "x-api-key"]]
    spare = create_api_key(catalog, "proj")
    revoke_api_keys(catalog, "proj", key_id=spare["id"])
    r = client.post(path, headers={"x-api-key": spare["api_key"]}, **kwargs)
    assert r.status_code == 401 and "revoked" in r.json()["detail"][0]["msg"]
    assert client.post(path, headers={"x-api-key": key["api_key"]}, **kwargs).status_code == 200


def test_keys_are_stored_hashed(env) -> None:
    _, catalog, key, _, _ = env
    import sqlalchemy as sa

    with catalog.engine.connect() as conn:
        dump = json.dumps(
            [list(map(str, r)) for r in conn.execute(sa.text("SELECT * FROM api_keys"))]
        )
    assert key["api_key"] not in dump


@pytest.mark.parametrize("cbor", [False, True], ids=["json", "cbor"])
def test_data_signatures(env, cbor: bool) -> None:
    client, catalog, key, other, _ = env
    ctype = {"content-type": "application/cbor" if cbor else "application/json"}
    h = {"x-api-key": key["api_key"], **ctype}
    ext = ".cbor" if cbor else ".json"

    signed = sign(DOC, key["hmac_key"], cbor=cbor)
    r = client.post(
        "/api/training/data",
        headers={**h, "x-file-name": "idle.s1", "x-add-date-id": "0"},
        content=signed,
    )
    assert r.status_code == 200, r.text
    assert r.json()["signature"] == "valid"
    item = _items(catalog)["idle.s1" + ext]
    assert (item["label"], item["category"]) == ("idle", "training")
    assert (
        item["metadata"]["ei_signature"] == "valid"
        and item["metadata"]["ei_check_signature"] == "1"
    )
    stored = Path(catalog.url[len("sqlite:///") :]).parent / "blobs"
    assert any(p.name == item["sha256"] for p in stored.rglob("*"))

    unsigned = {
        **DOC,
        "protected": {"ver": "v1", "alg": "none"},
        "payload": {**DOC["payload"], "interval_ms": 20},
    }
    body = cbor2.dumps(unsigned) if cbor else json.dumps(unsigned).encode()
    r = client.post(
        "/api/training/data",
        headers={**h, "x-file-name": "idle.s2", "x-add-date-id": "0"},
        content=body,
    )
    assert r.json()["signature"] == "unsigned"
    assert _items(catalog)["idle.s2" + ext]["category"] == "training"

    # signed with another project's key: stored, marked, kept out of training
    bad = sign(
        {**DOC, "payload": {**DOC["payload"], "interval_ms": 30}}, other["hmac_key"], cbor=cbor
    )
    r = client.post(
        "/api/training/data",
        headers={**h, "x-file-name": "idle.s3", "x-add-date-id": "0"},
        content=bad,
    )
    assert r.status_code == 200 and r.json()["signature"] == "invalid"
    item = _items(catalog)["idle.s3" + ext]
    assert item["category"] == "excluded"
    assert (
        item["metadata"]["ei_signature"] == "invalid"
        and item["metadata"]["ei_check_signature"] == "0"
    )

    # a signature changed by one digit is invalid too
    tampered = signed.replace(b"-9.12", b"-9.13") if not cbor else None
    if tampered is not None:
        r = client.post(
            "/api/testing/data", headers={**h, "x-file-name": "idle.s4"}, content=tampered
        )
        assert r.json()["signature"] == "invalid"


def test_data_bad_input_names_the_field(env) -> None:
    client, _, key, _, _ = env
    h = {"x-api-key": key["api_key"]}
    r = client.post("/api/training/data", headers=h, content=b"{not json")
    assert r.status_code == 400 and _loc(r) == [["body"]]
    r = client.post(
        "/api/training/data", headers={**h, "content-type": "application/cbor"}, content=b"\xff\xff"
    )
    assert r.status_code == 400 and "CBOR" in r.json()["detail"][0]["msg"]
    doc = {**DOC, "payload": {**DOC["payload"], "values": [[1.0, 2.0], [3.0]]}}
    r = client.post("/api/training/data", headers=h, content=json.dumps(doc))
    assert r.status_code == 422 and _loc(r) == [["body", "payload", "values", "1"]]
    doc = {**DOC, "protected": {"ver": "v2", "alg": "HS256"}}
    r = client.post("/api/training/data", headers=h, content=json.dumps(doc))
    assert r.status_code == 422 and ["body", "protected", "ver"] in _loc(r)
    doc = {**DOC, "payload": {**DOC["payload"], "interval_ms": -1}}
    r = client.post("/api/training/data", headers=h, content=json.dumps(doc))
    assert r.status_code == 422 and _loc(r) == [["body", "payload", "interval_ms"]]


def _output(cells: list[list[float]], image: bytes | None = PNG) -> dict:
    body = {
        "device_id": "cam-7",
        "model_id": "fomo-3",
        "output_tensors": [
            {
                "name": "out",
                "shape": [len(cells), len(cells[0])],
                "data": [v for c in cells for v in c],
            }
        ],
    }
    if image is not None:
        body["image"] = base64.b64encode(image).decode()
    return body


def test_device_output_threshold(env) -> None:
    client, catalog, key, _, events = env
    h = {"x-api-key": key["api_key"]}
    # every cell sure (top class >= 0.8): nothing kept
    r = client.post("/api/device-output", headers=h, json=_output([[0.9, 0.1], [0.05, 0.95]]))
    assert r.status_code == 200 and r.json()["captured"] is False
    assert r.json()["lowest_confidence"] == pytest.approx(0.9) and r.json()["threshold"] == 0.8
    assert _items(catalog) == {}
    # exactly at the threshold is not under it
    r = client.post("/api/device-output", headers=h, json=_output([[0.8, 0.2]]))
    assert r.json()["captured"] is False
    # one unsure cell: the image becomes an unlabeled item with device, model, confidence
    r = client.post("/api/device-output", headers=h, json=_output([[0.9, 0.1], [0.55, 0.45]]))
    assert r.json()["captured"] is True, r.json()
    item = _items(catalog)[r.json()["item"]["name"]]
    assert item["label"] is None and item["category"] is None
    assert item["metadata"] == {
        "device_id": "cam-7",
        "model_id": "fomo-3",
        "confidence": "0.5500",
        "threshold": "0.8",
    }
    assert item["source"] == "api://device-output/"
    assert events[-1] == ("proj", {"via": "api/device-output", "items": 1})
    # unsure but no image: nothing to keep
    r = client.post("/api/device-output", headers=h, json=_output([[0.5, 0.5]], image=None))
    assert r.json()["captured"] is False and "no image" in r.json()["reason"]
    # the project's own threshold
    set_threshold(catalog, "proj", 0.5)
    r = client.post("/api/device-output", headers=h, json=_output([[0.55, 0.45]], image=PNG + b"x"))
    assert r.json()["captured"] is False and r.json()["threshold"] == 0.5


def test_device_output_bad_input_names_the_field(env) -> None:
    client, _, key, _, _ = env
    h = {"x-api-key": key["api_key"]}
    body = _output([[0.5, 0.5]])
    body["output_tensors"][0]["shape"] = [3, 2]
    r = client.post("/api/device-output", headers=h, json=body)
    assert r.status_code == 422 and _loc(r) == [["body", "output_tensors", "0", "data"]]
    body = _output([[0.5, 1.5]])
    r = client.post("/api/device-output", headers=h, json=body)
    assert r.status_code == 422 and _loc(r) == [["body", "output_tensors", "0", "data"]]
    r = client.post("/api/device-output", headers=h, json=_output([[0.5, 0.5]], image=b"GIF89a"))
    assert r.status_code == 422 and _loc(r) == [["body", "image"]]
    body = _output([[0.5, 0.5]])
    body["image"] = "%%%"
    r = client.post("/api/device-output", headers=h, json=body)
    assert r.status_code == 422 and _loc(r) == [["body", "image"]]
    r = client.post("/api/device-output", headers=h, json={"device_id": "d"})
    assert r.status_code == 422 and ["body", "model_id"] in _loc(r)


def test_openapi_documents_the_api(env) -> None:
    client, *_ = env
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) >= {"/api/{kind}/files", "/api/{kind}/data", "/api/device-output"}
    data = doc["paths"]["/api/{kind}/data"]["post"]
    assert set(data["requestBody"]["content"]) == {"application/json", "application/cbor"}
    assert "DataAcquisition" in doc["components"]["schemas"]
    headers = {p["name"] for p in doc["paths"]["/api/{kind}/files"]["post"]["parameters"]}
    assert headers >= {
        "x-api-key",
        "x-label",
        "x-no-label",
        "x-disallow-duplicates",
        "x-add-date-id",
    }
