"""The notify decisions: outcome from real task-instance states, whenToEmail, the
payload, the subject and the operator's arguments."""

from __future__ import annotations

import pytest
from airflow.utils.state import TaskInstanceState as S

from edgeloop.errors import ConfigError
from edgeloop.notify.email import render_text, subject
from edgeloop.notify.results import run_results, should_email, task_log_url
from edgeloop.notify.webhook import SEED_KEYS, build_payload, sign, verify_signature

BASE = "http://airflow.example:8080/"


def _results(states, summary=None, **kwargs):
    return run_results(
        pipeline_id="demo",
        pipeline_name="Demo",
        project="digits",
        run_id="scheduled__2026-01-01T00:00:00+00:00",
        base_url=BASE,
        task_states=states,
        summary=summary,
        exclude={"notify"},
        **kwargs,
    )


OUTCOMES = [
    # (task states, success, failed tasks in report order)
    ({"sync": S.SUCCESS, "label": S.SUCCESS, "summary": S.SUCCESS}, True, []),
    ({"sync": S.SUCCESS, "explore": S.SKIPPED, "summary": S.SUCCESS}, True, []),
    (
        {"sync": S.FAILED, "label": S.UPSTREAM_FAILED, "summary": S.UPSTREAM_FAILED},
        False,
        ["sync", "label", "summary"],
    ),
    ({"sync": S.SUCCESS, "label": S.SUCCESS, "summary": S.FAILED}, False, ["summary"]),
    # The notify task's own state (running) and unstarted tasks never decide the outcome.
    ({"sync": S.SUCCESS, "notify": S.RUNNING, "summary": None}, True, []),
    (
        {"sync_0": S.SUCCESS, "sync_1": S.FAILED, "summary": S.UPSTREAM_FAILED},
        False,
        ["sync_1", "summary"],
    ),
]


@pytest.mark.parametrize(("states", "success", "failed"), OUTCOMES)
def test_outcome_from_task_states(states, success, failed) -> None:
    results = _results(states)
    assert results.success is success
    assert results.outcome == ("succeeded" if success else "failed")
    assert [t.task_id for t in results.failed_tasks] == failed


def test_failed_task_log_url_and_run_url() -> None:
    results = _results({"sync": S.FAILED})
    run = "http://airflow.example:8080/dags/demo/runs/scheduled__2026-01-01T00%3A00%3A00%2B00%3A00"
    assert results.run_url == run
    assert results.failed_tasks[0].log_url == run + "/tasks/sync"
    assert (
        task_log_url(BASE, "demo", "r 1", "t")
        == "http://airflow.example:8080/dags/demo/runs/r%201/tasks/t"
    )


def _sync(new=0, updated=0, deleted=0):
    return {"sync": {"listed": 5, "new": new, "updated": updated, "deleted": deleted}}


WHEN = [
    # (whenToEmail, summary, failed, expected)
    ("always", _sync(), False, True),
    ("on_new_data", _sync(new=1), False, True),
    ("on_new_data", _sync(updated=1), False, True),
    ("on_new_data", _sync(deleted=1), False, True),
    ("on_new_data", _sync(), False, False),
    ("on_new_data", None, True, True),
    ("never", _sync(new=9), True, False),
]


@pytest.mark.parametrize(("when", "summary", "failed", "expected"), WHEN)
def test_should_email(when, summary, failed, expected) -> None:
    states = {"sync": S.FAILED if failed else S.SUCCESS}
    assert should_email(when, _results(states, summary)) is expected


def test_unknown_when_to_email_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"whenToEmail.*always \| on_new_data \| never"):
        should_email("weekly", _results({}))


def test_payload_has_the_seed_keys_first_and_extras_when_present() -> None:
    summary = {**_sync(new=2), "checklist": {"ok": 2, "fail": 0}, "deployment": "lib.zip"}
    payload = build_payload(_results({"sync": S.SUCCESS}, summary, organization_id="org-1"))
    assert tuple(payload)[:8] == SEED_KEYS
    assert payload["organizationId"] == "org-1"
    assert (payload["newItems"], payload["newChecklistOK"]) == (2, 2)
    assert payload["deployment"] == "lib.zip"
    assert "accuracy" not in payload and "version" not in payload  # absent: not retrained


def test_subject_and_optional_keys_in_the_text() -> None:
    plain = _results({"sync": S.SUCCESS}, _sync(new=1))
    assert subject(plain) == "[edgeloop] Demo: succeeded, 1 new item"
    assert "Model" not in render_text(plain)
    summary = {**_sync(), "training": {"validation_accuracy": 0.5}, "quality_gate": "rejected"}
    text = render_text(_results({"sync": S.SUCCESS}, summary))
    assert "validation accuracy  50.00%" in text and "quality gate" in text
    assert "test accuracy" not in text


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", body) == f"sha256={expected}"
    assert verify_signature("k", "1700000000", body, f"sha256={expected}", now=1700000100)
    assert not verify_signature("k", "not-a-time", body, f"sha256={expected}")


def test_operator_defaults_templates_and_no_secret_on_the_task() -> None:
    from airflow.sdk import TriggerRule

    from edgeloop.operators.notify import NotifyOperator

    op = NotifyOperator(
        pipeline_id="demo",
        pipeline_name="Demo",
        project="digits",
        email_recipients=["a@example.org"],
        webhook_url="https://example.org/hook",
        webhook_conn_id="edgeloop_webhook",
    )
    assert (op.task_id, op.trigger_rule) == ("notify", TriggerRule.ALL_DONE)
    assert op.when_to_email == "on_new_data" and op.email_conn_id == "smtp_default"
    assert set(op.template_fields) == {"email_recipients", "webhook_url", "explorer_png"}
    assert "webhook_secret" not in vars(op)  # read from the connection only when executed
    with pytest.raises(ConfigError):
        NotifyOperator(pipeline_id="d", pipeline_name="D", project="p", when_to_email="daily")


def test_every_dag_ends_with_notify_wired_from_the_config(tmp_path) -> None:
    import json

    from edgeloop.dag_factory import build_dags

    step = {
        "name": "s",
        "builtinTransformationBlock": {"type": "s3-to-project", "path": "s3://bkt/x/"},
    }
    (tmp_path / "plain.json").write_text(json.dumps({"id": "plain", "name": "P", "steps": [step]}))
    (tmp_path / "told.json").write_text(
        json.dumps(
            {
                "id": "told",
                "name": "Told",
                "project": "proj",
                "emailRecipients": ["a@example.org"],
                "whenToEmail": "always",
                "emailConnId": "smtp_ops",
                "notificationWebhook": "https://hooks.example.org/x?k=1",
                "webhookConnId": "hook_secret",
                "organizationId": "org-1",
                "steps": [step],
            }
        )
    )
    dags = build_dags(tmp_path)
    for dag in dags.values():
        notify = dag.task_dict["notify"]
        # after every other task, whatever happened (a teardown: all done, no setup)
        assert notify.is_teardown and not notify.downstream_list
        assert notify.trigger_rule == "all_done_setup_success"
        others = [t for t in dag.tasks if t is not notify]
        assert all(notify in t.get_flat_relatives(upstream=False) for t in others)
        assert notify.doc_md
        # the run-from-code samples are in the DAG's docs
        for marker in ("```bash", "```python", "```javascript", f"/api/v2/dags/{dag.dag_id}/"):
            assert marker in dag.doc_md
        param = dag.params.get_param("ignoreLastSuccessfulRun")
        assert param.schema["type"] == "boolean" and param.description
    plain, told = dags["plain"].task_dict["notify"], dags["told"].task_dict["notify"]
    assert (plain.email_recipients, plain.when_to_email, plain.webhook_url) == (
        [],
        "on_new_data",
        None,
    )
    assert (told.pipeline_id, told.pipeline_name, told.project) == ("told", "Told", "proj")
    assert told.email_recipients == ["a@example.org"] and told.when_to_email == "always"
    assert (told.email_conn_id, told.webhook_conn_id) == ("smtp_ops", "hook_secret")
    assert told.webhook_url == "https://hooks.example.org/x?k=1"
    assert told.organization_id == "org-1"
