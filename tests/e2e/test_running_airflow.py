"""What `make up` runs (api-server, scheduler, dag-processor, triggerer; LocalExecutor):
a pipeline triggered through the REST API v2 runs through the scheduler."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.slow


def test_a_pipeline_triggered_through_the_rest_api_runs(running_airflow, s3_client) -> None:
    bucket = f"running-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    for i in range(6):
        s3_client.put_object(Bucket=bucket, Key=f"in/{'ab'[i % 2]}/{i}.png", Body=bytes([i]) * 64)
    running_airflow.add_pipeline(
        "viarest.json",
        {
            "id": "viarest",
            "name": "Triggered through the REST API",
            "schedule": None,
            "steps": [
                {
                    "name": "import",
                    "builtinTransformationBlock": {
                        "type": "s3-to-project",
                        "path": f"s3://{bucket}/in/",
                        "awsConnId": "edgeloop_test_s3",
                    },
                }
            ],
        },
    )
    running_airflow.wait_dags("viarest")
    rest = running_airflow.rest
    run_id = rest.trigger("viarest")
    assert rest.wait({"viarest": run_id}, timeout=600) == {"viarest": "success"}, (
        running_airflow.logs_tail()
    )
    from edgeloop.catalog.store import Catalog

    url = f"sqlite:///{running_airflow.edgeloop_home / 'catalog.db'}"
    assert Catalog(url).counts("viarest")["label"] == {"a": 3, "b": 3}
