"""Parse benchmark: build the DAGs of N generated pipeline configs (one import step each).

What the DAG processor does with ``dags/edgeloop_pipelines.py``: load, check and
build every config of a folder. The one-time import of Airflow and edgeloop is
excluded; the rest (reading the files, JSON, schema and rule checks, the typed
model, the DAG objects) is timed, best of three.

The last line is machine-readable: ``parse_1000_s=S`` (seconds for 1,000 configs;
issue 7's target: under 2 s). Options: ``--configs N``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def config(i: int) -> dict:
    return {
        "id": f"pipeline_{i:04d}",
        "name": f"Pipeline {i}",
        "description": "A generated pipeline.",
        "project": f"project_{i % 50}",
        "intervalStr": ["15m", "1h", "1d", "2d"][i % 4],
        "tags": ["bench"],
        "steps": [
            {
                "name": f"Fetch data from s3://bench-{i % 7}/data/{i}/",
                "builtinTransformationBlock": {
                    "type": "s3-to-project",
                    "path": f"s3://bench-{i % 7}/data/{i}/",
                    "awsConnId": "bench_s3",
                    "category": "split",
                    "labelStrategy": "infer-from-folder-name",
                },
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=1000)
    args = parser.parse_args()

    t0 = time.perf_counter()
    from edgeloop.dag_factory import build_dags

    print(f"one-time import of Airflow + edgeloop: {time.perf_counter() - t0:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.configs):
            (folder / f"pipeline_{i:04d}.json").write_text(json.dumps(config(i)))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            dags = build_dags(folder)
            times.append(time.perf_counter() - t0)
        assert len(dags) == args.configs, len(dags)
        assert not any("invalid-config" in d.tags for d in dags.values())
    best = min(times)
    print(f"{args.configs} configs → {len(dags)} DAGs: " + ", ".join(f"{t:.2f} s" for t in times))
    # scaled to 1,000 configs when run with another --configs
    print(f"parse_1000_s={best * 1000 / args.configs:.2f}")


if __name__ == "__main__":
    main()
