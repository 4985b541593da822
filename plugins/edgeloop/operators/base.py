"""What every task of a pipeline DAG shares: the config it was built from.

Each task carries the sha256 of its pipeline config file. The first task of a
run records it (XCom ``config_sha256``); every later task compares its own, so a
run never executes a mix of two configs when someone edits the file while the
run is going on (with a versioned DAG bundle Airflow already gives each task the
run's version; with a local folder this check is what protects the run).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context

CONFIG_XCOM_KEY = "config_sha256"


class PipelineTaskOperator(BaseOperator):
    """Base of the tasks of a pipeline: keyword-only arguments, stored as given."""

    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        pipeline_id: str,
        config_file: str,
        config_sha256: str = "",
        first_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline_id = pipeline_id
        self.config_file = config_file
        self.config_sha256 = config_sha256
        self.first_task_id = first_task_id

    def check_config(self, context: Context) -> None:
        """Record (first task) or compare (the others) the config this run executes."""
        from edgeloop.errors import ConfigError

        ti = context["ti"]
        if self.first_task_id is None or self.first_task_id == self.task_id:
            ti.xcom_push(key=CONFIG_XCOM_KEY, value=self.config_sha256)
            return
        started = ti.xcom_pull(task_ids=self.first_task_id, key=CONFIG_XCOM_KEY)
        if isinstance(started, list):  # a mapped first task (a block step's slots): any
            started = next((s for s in started if s and s != self.config_sha256), None)
        if started and started != self.config_sha256:
            raise ConfigError(
                f"{self.config_file} changed while this run was going on (the run started "
                f"with config sha256 {started[:12]}, the file is now {self.config_sha256[:12]}); "
                "this run stops here instead of mixing two configs: trigger a new run",
                file=self.config_file,
            )
