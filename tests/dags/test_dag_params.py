"""The run parameter every pipeline DAG has, ``ignoreLastSuccessfulRun``.

The builder sets the DAG's params after its tasks exist (so Airflow does not deep-copy
them into every operator); these tests pin what that must still give: the param in the
serialized DAG (the trigger form), in every task's run-time params, overridable by a
run's conf, and one DAG's run never changing another DAG's default.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk.definitions.param import process_params

from edgeloop.dag_factory import build_dags

REPO = Path(__file__).resolve().parents[2]


def test_param_is_serialized_for_the_trigger_form() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    dag = build_dags(REPO / "include" / "pipelines")["demo"]
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    param = restored.params.get_param("ignoreLastSuccessfulRun")
    assert param.value is False
    assert param.schema["type"] == "boolean"
    assert "again" in param.description


def test_every_task_sees_the_param_and_a_run_conf_overrides_it_for_that_dag_only() -> None:
    dags = build_dags(REPO / "include" / "pipelines")
    demo, other = dags["demo"], next(d for i, d in dags.items() if i != "demo")
    for task in demo.tasks:
        default = process_params(demo, task, None, suppress_exception=False)
        assert default["ignoreLastSuccessfulRun"] is False, task.task_id
    task = demo.tasks[0]
    forced = process_params(demo, task, {"ignoreLastSuccessfulRun": True}, suppress_exception=False)
    assert forced["ignoreLastSuccessfulRun"] is True
    # the run's conf did not leak into the DAG's default, its other tasks or another DAG
    assert demo.params["ignoreLastSuccessfulRun"] is False
    for dag, other_task in ((demo, demo.tasks[1]), (other, other.tasks[0])):
        params = process_params(dag, other_task, None, suppress_exception=False)
        assert params["ignoreLastSuccessfulRun"] is False
