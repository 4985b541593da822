"""The ``notify`` task: the last task of a pipeline's DAG, run whatever happened upstream.

It works out the run's outcome from the other task instances' states, reads the
summary from XCom (the summary task may have failed: it still reports), sends
the email and the signed webhook, and records the delivery in the run summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context, TriggerRule


class NotifyOperator(BaseOperator):
    """Email and webhook for one run; never fails because a receiver is down.

    Every argument is resolved by the DAG builder from the pipeline config; the
    secrets (SMTP password, webhook signing secret) are read from the Airflow
    connections at run time and never stored on the task.
    """

    template_fields: Sequence[str] = ("email_recipients", "webhook_url", "explorer_png")
    ui_color = "#fff3cd"

    def __init__(
        self,
        *,
        pipeline_id: str,
        pipeline_name: str,
        project: str,
        email_recipients: Sequence[str] = (),
        when_to_email: str = "on_new_data",
        email_conn_id: str = "smtp_default",
        webhook_url: str | None = None,
        webhook_conn_id: str | None = None,
        organization_id: str | int | None = None,
        summary_task_id: str = "summary",
        explorer_png: str | None = None,
        webhook_options: dict[str, Any] | None = None,
        task_id: str = "notify",
        trigger_rule: str = TriggerRule.ALL_DONE,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_id=task_id, trigger_rule=trigger_rule, **kwargs)
        from edgeloop.notify.results import check_when_to_email

        self.pipeline_id = pipeline_id
        self.pipeline_name = pipeline_name
        self.project = project
        self.email_recipients = list(email_recipients)
        self.when_to_email = check_when_to_email(when_to_email)
        self.email_conn_id = email_conn_id
        self.webhook_url = webhook_url
        self.webhook_conn_id = webhook_conn_id
        self.organization_id = organization_id
        self.summary_task_id = summary_task_id
        self.explorer_png = explorer_png
        self.webhook_options = dict(webhook_options or {})

    @cached_property
    def webhook_secret(self) -> str | None:
        """The signing secret: the password of the webhook connection (if one is set)."""
        if not self.webhook_conn_id:
            return None
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(self.webhook_conn_id).password or None

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.notify.dispatch import record_notifications, send_notifications
        from edgeloop.notify.results import run_results

        ti = context["ti"]
        run_id = context["run_id"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
        summary = ti.xcom_pull(task_ids=self.summary_task_id)
        results = run_results(
            pipeline_id=self.pipeline_id,
            pipeline_name=self.pipeline_name,
            project=self.project,
            run_id=run_id,
            base_url=api_base_url(),
            task_states=states,
            summary=summary if isinstance(summary, dict) else None,
            organization_id=self.organization_id,
            exclude={self.task_id},
        )
        self.log.info(
            "run %s %s; %s new item(s); failed tasks: %s",
            run_id,
            results.outcome,
            results.new_items,
            ", ".join(t.task_id for t in results.failed_tasks) or "none",
        )
        report = send_notifications(
            results,
            email_recipients=self.email_recipients,
            when_to_email=self.when_to_email,
            email_conn_id=self.email_conn_id,
            explorer_png=self.explorer_png or None,
            webhook_url=self.webhook_url or None,
            webhook_secret=self.webhook_secret,
            webhook_options=self.webhook_options,
        )
        record_notifications(results, report)
        return report


def api_base_url() -> str:
    """The UI's base URL: Airflow's ``[api] base_url``."""
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback="http://localhost:8080/")
