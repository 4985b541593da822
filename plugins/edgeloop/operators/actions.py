"""The project-action step's operators: retrain (with the quality gate), the data explorer,
a version, the deployment (C++ library zip) and its publication after an approval.

Thin: each stores its keyword arguments and calls one function of ``edgeloop.training``
inside ``execute`` (TensorFlow and scikit-learn are imported there, never at parse time).
What goes to XCom is small: numbers (model, map, version, deployment), accuracies, the
gate's decision and blob locations; the summary task reads them.

Idempotent: every record an action makes carries its pipeline, Airflow run and task id
(``RunKey``), so a retried or cleared task of the same run finds and returns what it made
(``reused`` in its result) instead of a second model, map, deployment or version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from edgeloop.config.model import DEFAULT_MAX_DROP
from edgeloop.operators.base import PipelineTaskOperator

# The keys of a deployment record the tasks pass on.
DEPLOYMENT_KEYS = ("model_type", "accuracy", "verification", "arena_bytes", "weights_bytes")


def verification_text(verification: dict[str, Any] | None) -> str | None:
    """A deployment's verification in one phrase: ``bit-exact on 60 samples (max |diff| 0)``."""
    if not verification:
        return None
    diff = verification.get("max_abs_diff")
    shown = f"{diff:g}" if isinstance(diff, int | float) else diff
    return (
        f"{verification.get('rule')} against {verification.get('reference')} on "
        f"{verification.get('samples')} samples (max |diff| {shown})"
    )


class ProjectActionOperator(PipelineTaskOperator):
    """Base of the project actions: the project they act on."""

    template_fields: Sequence[str] = ("project",)
    ui_color = "#fdf1dc"

    def __init__(self, *, project: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project = project

    def run_key(self, context: Context):  # -> edgeloop.training.registry.RunKey
        """What this task instance's records are keyed on: pipeline, run id, task id."""
        from edgeloop.training.registry import RunKey

        return RunKey(self.pipeline_id, context["run_id"], self.task_id)


class RetrainOperator(ProjectActionOperator):
    """retrainModel: retrain with the current model's impulse on the project as it is now;
    the new model becomes current only through the quality gate (``max_drop``)."""

    def __init__(self, *, max_drop: float = DEFAULT_MAX_DROP, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_drop = max_drop

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from edgeloop.catalog.store import Catalog
        from edgeloop.errors import TrainingError
        from edgeloop.training import registry
        from edgeloop.training.train import retrain

        self.check_config(context)
        catalog = Catalog.from_settings()
        try:
            registry.require_current_model(catalog, self.project)
        except TrainingError as exc:  # never trained: retrying cannot help
            raise AirflowFailException(str(exc)) from exc
        result = retrain(
            self.project, max_drop=self.max_drop, run=self.run_key(context), catalog=catalog
        )
        gate = result["gate"]
        self.log.info(
            "model %s%s: validation accuracy %s, test accuracy %s; quality gate %s: %s",
            result["model"],
            " (made by an earlier try of this task, reused)" if result["reused"] else "",
            result["metrics"]["validation_accuracy"],
            result["metrics"]["test_accuracy"],
            "passed" if gate["passed"] else "failed",
            gate["reason"],
        )
        return {
            "project": self.project,
            "model": result["model"],
            "previous_model": result["previous_model"],
            "promoted": result["promoted"],
            "validation_accuracy": result["metrics"]["validation_accuracy"],
            "test_accuracy": result["metrics"]["test_accuracy"],
            "gate": gate,
            "confusion_png": result["confusion_png"],
            "reused": result["reused"],
        }


class ExplorerOperator(ProjectActionOperator):
    """refreshDataExplorer: extend (or refit) the project's t-SNE map with the current
    model's embeddings; store the PNG, the per-item points and label suggestions."""

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.training.explorer import refresh_explorer

        self.check_config(context)
        result = refresh_explorer(self.project, run=self.run_key(context))
        self.log.info(
            "explorer map %s%s: %s point(s), %s new, %s suggestion(s); PNG %s",
            result["map"],
            " (made by an earlier try of this task, reused)" if result["reused"] else "",
            result["points"],
            result["new"],
            result["suggestions"],
            result["png"],
        )
        keys = ("map", "png", "png_sha", "points", "new", "refit", "suggestions", "model", "reused")
        return {"project": self.project, **{k: result.get(k) for k in keys}}


class DeployOperator(ProjectActionOperator):
    """buildBinary: the verified C++ library of the model retrained in this run.

    Skipped (with the gate's reason) when that model did not pass the quality gate.
    Published as the project's current deployment at once, or, with ``require_approval``,
    later by ``PublishDeploymentOperator`` once a person approves. The deployment this task
    built in an earlier try of the same run is reused, not built again.
    """

    def __init__(
        self,
        *,
        retrain_task_id: str,
        model_type: str = "int8",
        require_approval: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.retrain_task_id = retrain_task_id
        self.model_type = model_type
        self.require_approval = require_approval

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from edgeloop.training.deployments import build_deployment

        self.check_config(context)
        retrained = context["ti"].xcom_pull(task_ids=self.retrain_task_id)
        if not retrained:
            raise AirflowFailException(
                f"task {self.retrain_task_id} left no result in this run: nothing to deploy"
            )
        model = retrained["model"]
        if not retrained["promoted"]:
            raise AirflowSkipException(
                f"model {model} did not pass the quality gate ({retrained['gate']['reason']}): "
                "no deployment built"
            )
        publish = not self.require_approval
        result = build_deployment(
            self.project,
            model_type=self.model_type,
            model=model,
            publish=publish,
            run=self.run_key(context),
        )
        out = {
            "project": self.project,
            "deployment": result["deployment"],
            "model": model,
            "zip": result["zip"],
            "zip_sha": result["zip_sha"],
            "report_sha": result["report_sha"],
            "published": result["published"],
            "require_approval": self.require_approval,
            "reused": result["reused"],
            **{k: result.get(k) for k in DEPLOYMENT_KEYS},
        }
        self.log.info(
            "deployment %s%s (%s, model %s): %s; verification: %s; %s",
            out["deployment"],
            " (built by an earlier try of this task, reused)" if result["reused"] else "",
            self.model_type,
            model,
            out["zip"],
            verification_text(out["verification"]),
            "published" if publish else "waiting for approval before it is published",
        )
        return out


class PublishDeploymentOperator(ProjectActionOperator):
    """After an approval: make this run's deployment the project's current one."""

    def __init__(self, *, deploy_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deploy_task_id = deploy_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from edgeloop.catalog.store import Catalog
        from edgeloop.training import registry
        from edgeloop.training.deployments import publish_deployment

        self.check_config(context)
        built = context["ti"].xcom_pull(task_ids=self.deploy_task_id)
        if not built:
            raise AirflowFailException(f"task {self.deploy_task_id} left no deployment to publish")
        catalog = Catalog.from_settings()
        dep = registry.get_deployment(catalog, self.project, built["deployment"])
        if dep["published_at"]:  # a re-run: publishing again would only move its date
            self.log.info("deployment %s was published at %s", dep["number"], dep["published_at"])
        else:
            dep = publish_deployment(self.project, built["deployment"], catalog=catalog)
            self.log.info("deployment %s published as the current one", dep["number"])
        return {"project": self.project, "deployment": dep["number"], "published": True}


class VersionOperator(ProjectActionOperator):
    """createVersion: an immutable snapshot (items, config, model, explorer map and the
    deployments built earlier in this run). Once per run: a re-run returns that version."""

    def __init__(self, *, deploy_task_ids: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deploy_task_ids = list(deploy_task_ids)

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.training.versions import create_version

        self.check_config(context)
        run_id = context["run_id"]
        ti = context["ti"]
        deployments = [
            r["deployment"] for r in (ti.xcom_pull(task_ids=t) for t in self.deploy_task_ids) if r
        ]
        result = create_version(
            self.project,
            config=self.config_file,
            deployment_numbers=deployments,
            run=self.run_key(context),
            description=f"pipeline {self.pipeline_id}, run {run_id}",
        )
        self.log.info(
            "version %s%s: %s item(s), model %s, deployment(s) %s; manifest %s",
            result["version"],
            " (created by an earlier try of this task, reused)" if result["reused"] else "",
            result["items"],
            result["model"],
            result["deployments"],
            result["manifest_sha"],
        )
        return result
