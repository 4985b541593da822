"""Parse benchmark: build the DAGs of N generated pipeline configs (one import step each).

What the DAG processor does with ``dags/edgeloop_pipelines.py``: load, check and
build every config of a folder. The one-time import of Airflow and edgeloop is
excluded; the rest (reading the files, JSON, schema and rule checks, the typed
model, the DAG objects) is timed, best of three.

Like Airflow's DAG processor manager, which calls ``gc.freeze()`` after its imports
and before it forks the processes that parse the files, the benchmark freezes the
imported objects before timing (otherwise every full garbage collection walks the
whole of Airflow's heap, about a quarter of the time here). The figure without the freeze is
printed too, for comparison.

The last line is machine-readable: ``parse_1000_s=S`` (seconds for 1,000 configs;
issue 7's target: under 2 s). Options: ``--configs N``.
"""

from __future__ import annotations

import argparse
import gc
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

        def best_of_three() -> tuple[float, list[float]]:
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                dags = build_dags(folder)
                times.append(time.perf_counter() - t0)
                assert len(dags) == args.configs, len(dags)
                assert not any("invalid-config" in d.tags for d in dags.values())
                del dags
                gc.collect()
            return min(times), times

        unfrozen, times = best_of_three()
        print(
            f"without gc.freeze(): {args.configs} configs: "
            + ", ".join(f"{t:.2f} s" for t in times)
        )
        gc.freeze()  # what the DAG processor manager does before parsing
        best, times = best_of_three()
    print(f"{args.configs} configs → DAGs: " + ", ".join(f"{t:.2f} s" for t in times))
    print(f"parse_1000_s_without_freeze={unfrozen * 1000 / args.configs:.2f}")
    # scaled to 1,000 configs when run with another --configs
    print(f"parse_1000_s={best * 1000 / args.configs:.2f}")


if __name__ == "__main__":
    main()
