"""The run-from-code samples and the `edgeloop run` argument handling."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess

import pytest

from edgeloop.runs.cli import conf_item
from edgeloop.runs.snippets import snippet, snippets_markdown

API = "http://airflow.example:8080"
CONF = {"ignoreLastSuccessfulRun": True, "note": 'it\'s "quoted"'}


def _curl_commands(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


def test_curl_sample_bodies_are_valid_json() -> None:
    text = snippet("my pipe", "curl", api_url=API, user="admin", conf=CONF)
    token_cmd, trigger_cmd = _curl_commands(text)
    assert f"{API}/auth/token" in token_cmd
    assert trigger_cmd[trigger_cmd.index("-X") + 2] == f"{API}/api/v2/dags/my%20pipe/dagRuns"
    body = json.loads(trigger_cmd[trigger_cmd.index("-d") + 1])
    assert body == {"logical_date": None, "conf": CONF}
    assert "EDGELOOP_API_PASSWORD" in text
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)


def test_python_sample_compiles_and_carries_the_conf() -> None:
    text = snippet("demo", "python", api_url=API, user="admin", conf=CONF)
    code = compile(text, "sample.py", "exec")
    assert "EDGELOOP_API_PASSWORD" in code.co_names or "EDGELOOP_API_PASSWORD" in text
    assert repr({"logical_date": None, "conf": CONF}) in text


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_sample_parses(tmp_path) -> None:
    path = tmp_path / "sample.mjs"
    path.write_text(snippet("demo", "node", api_url=API, user="admin", conf=CONF))
    subprocess.run(["node", "--check", str(path)], check=True)


def test_samples_default_to_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELOOP_API_URL", "http://api.internal:9090/")
    monkeypatch.setenv("EDGELOOP_API_USER", "robot")
    text = snippet("demo", "python")
    assert '"http://api.internal:9090"' in text and '"robot"' in text
    assert snippets_markdown("demo").count("```") == 6


def test_conf_items() -> None:
    assert conf_item("n=3") == ("n", 3)
    assert conf_item("flag=true") == ("flag", True)
    assert conf_item("name=digits v2") == ("name", "digits v2")
    assert conf_item('x={"a": 1}') == ("x", {"a": 1})
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        conf_item("novalue")
