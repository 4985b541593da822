"""The project-action step's operators: retrain (with the quality gate), the data explorer,
a version, the deployment (C++ library zip) and its publication after an approval.

Thin: each stores its keyword arguments and calls one function of ``edgeloop.training``
inside ``execute`` (TensorFlow and scikit-learn are imported there, never at parse time).
What goes to XCom is small: numbers (model, map, version, deployment), accuracies, the
gate's decision and blob locations; the summary task reads them.
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
        result = retrain(self.project, max_drop=self.max_drop, catalog=catalog)
        gate = result["gate"]
        self.log.info(
            "model %s: validation accuracy %s, test accuracy %s; quality gate %s: %s",
            result["model"],
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
        }


class ExplorerOperator(ProjectActionOperator):
    """refreshDataExplorer: extend (or refit) the project's t-SNE map with the current
    model's embeddings; store the PNG, the per-item points and label suggestions."""

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.training.explorer import refresh_explorer

        self.check_config(context)
        result = refresh_explorer(self.project)
        self.log.info(
            "explorer map %s: %s point(s), %s new, %s suggestion(s); PNG %s",
            result["map"],
            result["points"],
            result["new"],
            result["suggestions"],
            result["png"],
        )
        keys = ("map", "png", "png_sha", "points", "new", "refit", "suggestions", "model")
        return {"project": self.project, **{k: result.get(k) for k in keys}}


class DeployOperator(ProjectActionOperator):
    """buildBinary: the verified C++ library of the model retrained in this run.

    Skipped (with the gate's reason) when that model did not pass the quality gate.
    Published as the project's current deployment at once, or, with ``require_approval``,
    later by ``PublishDeploymentOperator`` once a person approves. A deployment of the same
    model and type already built (a re-run of this task) is reused, not built again.
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

        from edgeloop.catalog.store import Catalog
        from edgeloop.storage.blobs import BlobStore
        from edgeloop.training import registry
        from edgeloop.training.deployments import build_deployment, publish_deployment
        from edgeloop.training.train import blob_location

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
        catalog, blobs = Catalog.from_settings(), BlobStore.from_settings()
        built = [
            d
            for d in registry.list_deployments(catalog, self.project)
            if d["model_number"] == model and d["model_type"] == self.model_type
        ]
        if built:  # a re-run: the deployment of this model exists
            dep = built[-1]
            self.log.info("deployment %s of model %s exists: reused", dep["number"], model)
            if publish and not dep["published_at"]:
                publish_deployment(self.project, dep["number"], catalog=catalog)
            result = {
                "deployment": dep["number"],
                "model": model,
                "zip": blob_location(blobs, dep["zip_sha"]),
                "zip_sha": dep["zip_sha"],
                "report_sha": dep["report_sha"],
                **{k: dep["summary"].get(k) for k in DEPLOYMENT_KEYS},
            }
        else:
            result = build_deployment(
                self.project,
                model_type=self.model_type,
                model=model,
                publish=publish,
                catalog=catalog,
                blobs=blobs,
            )
        out = {
            "project": self.project,
            "deployment": result["deployment"],
            "model": model,
            "zip": result["zip"],
            "zip_sha": result["zip_sha"],
            "report_sha": result["report_sha"],
            "published": publish,
            "require_approval": self.require_approval,
            **{k: result.get(k) for k in DEPLOYMENT_KEYS},
        }
        self.log.info(
            "deployment %s (%s, model %s): %s; verification: %s; %s",
            out["deployment"],
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

        from edgeloop.training.deployments import publish_deployment

        self.check_config(context)
        built = context["ti"].xcom_pull(task_ids=self.deploy_task_id)
        if not built:
            raise AirflowFailException(f"task {self.deploy_task_id} left no deployment to publish")
        dep = publish_deployment(self.project, built["deployment"])
        self.log.info("deployment %s published as the current one", dep["number"])
        return {"project": self.project, "deployment": dep["number"], "published": True}


class VersionOperator(ProjectActionOperator):
    """createVersion: an immutable snapshot (items, config, model, explorer map and the
    deployments built earlier in this run). Once per run: a re-run returns that version."""

    def __init__(self, *, deploy_task_ids: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deploy_task_ids = list(deploy_task_ids)

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.catalog.store import Catalog
        from edgeloop.training import registry
        from edgeloop.training.versions import create_version

        self.check_config(context)
        run_id = context["run_id"]
        catalog = Catalog.from_settings()
        for v in registry.list_versions(catalog, self.project):
            if v["run_id"] == run_id:
                self.log.info("version %s was created by this run: reused", v["number"])
                return {
                    "project": self.project,
                    "version": v["number"],
                    "manifest_sha": v["manifest_sha"],
                    **v["summary"],
                }
        ti = context["ti"]
        deployments = [
            r["deployment"] for r in (ti.xcom_pull(task_ids=t) for t in self.deploy_task_ids) if r
        ]
        result = create_version(
            self.project,
            config=self.config_file,
            deployment_numbers=deployments,
            run_id=run_id,
            description=f"pipeline {self.pipeline_id}, run {run_id}",
            catalog=catalog,
        )
        self.log.info(
            "version %s: %s item(s), model %s, deployment(s) %s; manifest %s",
            result["version"],
            result["items"],
            result["model"],
            result["deployments"],
            result["manifest_sha"],
        )
        return result
