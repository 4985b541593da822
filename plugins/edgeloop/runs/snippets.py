"""Copy-paste samples that trigger a pipeline's run through the REST API v2: curl,
Python (standard library only) and Node.js (18+, built-in fetch).

Each reads the password from ``EDGELOOP_API_PASSWORD`` (never written into the
sample), gets a token from ``POST /auth/token`` and triggers
``POST /api/v2/dags/{pipeline}/dagRuns``. The DAG docs show the same text.
"""

from __future__ import annotations

import json
import shlex
from typing import Any
from urllib.parse import quote

from edgeloop.errors import EdgeloopError

LANGUAGES: tuple[str, ...] = ("curl", "python", "node")


def trigger_body(conf: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"logical_date": None, "conf": dict(conf or {})}


def curl_snippet(pipeline_id: str, *, api_url: str, user: str, conf=None) -> str:
    q = shlex.quote
    trigger_url = f"{api_url}/api/v2/dags/{quote(pipeline_id, safe='')}/dagRuns"
    return "\n".join(
        [
            f"# Trigger pipeline {pipeline_id}: a token from the Airflow API, then a new run.",
            "# export EDGELOOP_API_PASSWORD=...  (the admin password `make up` prints)",
            f"TOKEN=$(curl -sSf -X POST {q(api_url + '/auth/token')} \\",
            f"  --data-urlencode {q('username=' + user)} \\",
            '  --data-urlencode "password=$EDGELOOP_API_PASSWORD" \\',
            """  | sed -E 's/.*"access_token" *: *"([^"]+)".*/\\1/')""",
            f"curl -sSf -X POST {q(trigger_url)} \\",
            '  -H "Authorization: Bearer $TOKEN" \\',
            "  -H 'Content-Type: application/json' \\",
            f"  -d {q(json.dumps(trigger_body(conf)))}",
            "",
        ]
    )


def python_snippet(pipeline_id: str, *, api_url: str, user: str, conf=None) -> str:
    body = trigger_body(conf)
    return f'''"""Trigger pipeline {pipeline_id} through the Airflow REST API v2."""

import json
import os
import urllib.request

API_URL = {json.dumps(api_url)}
PIPELINE = {json.dumps(pipeline_id)}


def post(url, body, token=None):
    headers = {{"Content-Type": "application/json"}}
    if token:
        headers["Authorization"] = f"Bearer {{token}}"
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


credentials = {{"username": {json.dumps(user)}, "password": os.environ["EDGELOOP_API_PASSWORD"]}}
token = post(f"{{API_URL}}/auth/token", credentials)["access_token"]
run = post(f"{{API_URL}}/api/v2/dags/{{PIPELINE}}/dagRuns", {body!r}, token)
print(run["dag_run_id"], run["state"])
'''


def node_snippet(pipeline_id: str, *, api_url: str, user: str, conf=None) -> str:
    body = json.dumps(trigger_body(conf))
    return f"""// Trigger pipeline {pipeline_id} through the Airflow REST API v2 (Node.js 18+).
const API_URL = {json.dumps(api_url)};
const PIPELINE = {json.dumps(pipeline_id)};

async function post(url, body, token) {{
  const headers = {{ "Content-Type": "application/json" }};
  if (token) headers.Authorization = `Bearer ${{token}}`;
  const res = await fetch(url, {{ method: "POST", headers, body: JSON.stringify(body) }});
  if (!res.ok) throw new Error(`${{url}}: HTTP ${{res.status}} ${{await res.text()}}`);
  return res.json();
}}

async function main() {{
  const credentials = {{
    username: {json.dumps(user)},
    password: process.env.EDGELOOP_API_PASSWORD,
  }};
  const {{ access_token: token }} = await post(`${{API_URL}}/auth/token`, credentials);
  const url = `${{API_URL}}/api/v2/dags/${{encodeURIComponent(PIPELINE)}}/dagRuns`;
  const run = await post(url, {body}, token);
  console.log(run.dag_run_id, run.state);
}}

main().catch((err) => {{
  console.error(err);
  process.exit(1);
}});
"""


def snippet(
    pipeline_id: str,
    lang: str,
    *,
    api_url: str | None = None,
    user: str | None = None,
    conf: dict[str, Any] | None = None,
) -> str:
    """The sample in ``lang`` (curl | python | node) that triggers ``pipeline_id``.

    ``api_url`` and ``user`` default to ``EDGELOOP_API_URL`` / ``EDGELOOP_API_USER``.
    """
    builders = {"curl": curl_snippet, "python": python_snippet, "node": node_snippet}
    if lang not in builders:
        raise EdgeloopError(f"unknown snippet language {lang!r}: expected one of {LANGUAGES}")
    if api_url is None or user is None:
        from edgeloop.settings import get_settings

        settings = get_settings()
        api_url = api_url or settings.api_url
        user = user or settings.api_user
    return builders[lang](pipeline_id, api_url=api_url.rstrip("/"), user=user, conf=conf)


def snippets_markdown(
    pipeline_id: str, *, api_url: str | None = None, user: str | None = None, **kwargs: Any
) -> str:
    """The three samples as Markdown sections (for a DAG's ``doc_md``)."""
    if api_url is None or user is None:  # the settings read once, not once per sample
        from edgeloop.settings import get_settings

        settings = get_settings()
        api_url, user = api_url or settings.api_url, user or settings.api_user
    kwargs.update(api_url=api_url, user=user)
    fences = {"curl": "bash", "python": "python", "node": "javascript"}
    parts = ["#### Run the pipeline from code", ""]
    for lang in LANGUAGES:
        parts += [f"**{lang}**", "", f"```{fences[lang]}", snippet(pipeline_id, lang, **kwargs)]
        parts[-1] = parts[-1].rstrip("\n")
        parts += ["```", ""]
    return "\n".join(parts)
