"""`make demo`: the demo pipeline through Airflow, end to end, twice.

1. an Airflow home inside the repo (``$AIRFLOW_HOME``, default ``.airflow``):
   SQLite, LocalExecutor, no examples; ``airflow db migrate``;
2. a local S3-compatible server (moto) on 127.0.0.1 and the bucket
   ``s3://edgeloop-demo/digits/`` filled with scikit-learn's digits as PNGs,
   one folder per label plus ``unlabeled/``;
3. ``airflow dags test demo`` (verify_source → sync → label → summary), then
   the run summary (``edgeloop summary demo``);
4. a few objects added to the bucket, a second run, and a check that only
   those were imported;
5. the project trained once (``edgeloop train demo --impulse
   include/impulses/digits.json``), then the seed's five-step pipeline
   (``include/pipelines/demo-actions.json``): sync → explorer → retrain →
   version → int8 zip, and what it made (accuracies, version, zip and its
   verification, the explorer PNG).

Airflow's own output goes to ``$AIRFLOW_HOME/demo.log``; on failure its tail is
printed and the exit code is non-zero. Everything started here is stopped on
the way out, Ctrl-C included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edgeloop_dev.devenv import (
    REPO_ROOT,
    CommandError,
    S3Server,
    airflow_environ,
    bin_path,
    digit_objects,
    put_objects,
    run_logged,
    s3_connection_environ,
    tail,
    upload_digits,
    write_env_file,
)

PIPELINE = "demo"
BUCKET = "edgeloop-demo"
PREFIX = "digits/"
CONN_ID = "edgeloop_demo_s3"
PER_LABEL = 20
UNLABELED = 10
ACTIONS_PIPELINE = "demo-actions"  # the seed's five-step JSON (include/pipelines/)
IMPULSE = "include/impulses/digits.json"


def say(text: str = "") -> None:
    print(text, flush=True)


class Step:
    """Print a numbered step and its duration."""

    total = 7
    number = 0

    def __init__(self, text: str) -> None:
        Step.number += 1
        self.text = text

    def __enter__(self) -> Step:
        say(f"[{Step.number}/{Step.total}] {self.text} ...")
        self.t0 = time.monotonic()
        return self

    def __exit__(self, exc_type, *_: object) -> None:
        if exc_type is None:
            say(f"      done in {time.monotonic() - self.t0:.1f} s")


def edgeloop_cli(*args: str, env: dict[str, str], log_path: Path) -> str:
    """Run the `edgeloop` CLI, return its standard output (stderr goes to the log)."""
    with open(log_path, "ab") as err:
        err.write(f"\n$ edgeloop {' '.join(args)}\n".encode())
        err.flush()
        proc = subprocess.run(
            [bin_path("edgeloop"), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise CommandError(["edgeloop", *args], proc.returncode, log_path)
    return proc.stdout


def run_pipeline(env: dict[str, str], log_path: Path) -> dict:
    """`airflow dags test demo`, then the run summary (printed and returned)."""
    run_logged(
        [bin_path("airflow"), "dags", "test", PIPELINE], env=env, log_path=log_path, timeout=600
    )
    text = edgeloop_cli("summary", PIPELINE, env=env, log_path=log_path)
    for line in text.rstrip().splitlines():
        say(f"      {line}")
    return json.loads(edgeloop_cli("summary", PIPELINE, "--json", env=env, log_path=log_path))


def run_actions(env: dict[str, str], log_path: Path) -> dict:
    """`airflow dags test demo-actions`; its run summary."""
    run_logged(
        [bin_path("airflow"), "dags", "test", ACTIONS_PIPELINE],
        env=env,
        log_path=log_path,
        timeout=900,
    )
    return json.loads(
        edgeloop_cli("summary", ACTIONS_PIPELINE, "--json", env=env, log_path=log_path)
    )


def report_actions(summary: dict) -> bool:
    """Print what the project actions made; False when a part is missing."""
    training = summary.get("training") or {}
    gate = summary.get("quality_gate") or {}
    deployment = summary.get("deployment") or {}
    explorer = summary.get("explorer") or {}
    say(
        f"      retrained model {training.get('model')}: validation accuracy "
        f"{training.get('validation_accuracy', float('nan')):.4f}, test accuracy "
        f"{training.get('test_accuracy', float('nan')):.4f}"
    )
    say(f"      quality gate {'passed' if gate.get('passed') else 'FAILED'}: {gate.get('reason')}")
    say(f"      version {summary.get('version')}")
    if "skipped" in deployment:
        say(f"      deployment skipped: {deployment['skipped']}")
    else:
        say(f"      int8 C++ library zip: {deployment.get('zip')}")
        say(f"      verification: {deployment.get('verification')}")
    say(f"      data explorer PNG: {explorer.get('png')}")
    missing = [
        name
        for name, value in (
            ("training", training),
            ("version", summary.get("version")),
            ("deployment zip", deployment.get("zip")),
            ("explorer PNG", explorer.get("png")),
        )
        if not value
    ]
    if missing:
        say("      MISSING: " + ", ".join(missing))
    return not missing


def sync_counts(summary: dict) -> dict[str, int]:
    return summary.get("sync", summary)


def main() -> int:
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or REPO_ROOT / ".airflow").resolve()
    log_path = airflow_home / "demo.log"
    env = {**os.environ, **airflow_environ(airflow_home)}
    for key in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT"):
        env.pop(key, None)  # the demo's catalog and blobs live in its own home
    edgeloop_home = Path(env["EDGELOOP_HOME"])
    airflow_home.mkdir(parents=True, exist_ok=True)
    log_path.write_text(f"edgeloop demo, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    say(f"edgeloop demo — Airflow home {airflow_home}, log {log_path}")
    t_start = time.monotonic()
    server: S3Server | None = None
    try:
        with Step(f"Airflow metadata DB (SQLite, LocalExecutor) in {airflow_home}"):
            run_logged(
                [bin_path("airflow"), "db", "migrate"], env=env, log_path=log_path, timeout=600
            )
            if edgeloop_home.exists():
                # The S3 server below starts empty: start the demo's catalog empty too.
                say(f"      removing the previous demo catalog and blobs in {edgeloop_home}")
                shutil.rmtree(edgeloop_home)
            run_logged([bin_path("edgeloop"), "db", "upgrade"], env=env, log_path=log_path)

        with Step("local S3-compatible server (moto) on 127.0.0.1"):
            server = S3Server(log_path=airflow_home / "s3-server.log").start()
            conn = s3_connection_environ(CONN_ID, server.endpoint)
            env.update(conn)
            write_env_file(airflow_home / "env.sh", {**airflow_environ(airflow_home), **conn})
            say(f"      {server.endpoint}; Airflow connection {CONN_ID} points at it")

        with Step(f"fill s3://{BUCKET}/{PREFIX} with scikit-learn's digits as PNG files"):
            client = server.client()
            keys = upload_digits(client, BUCKET, PREFIX, per_label=PER_LABEL, unlabeled=UNLABELED)
            say(
                f"      {len(keys)} objects: {PER_LABEL} in each of 0/ … 9/, "
                f"{UNLABELED} in unlabeled/ (e.g. {keys[0]})"
            )

        with Step(f"run 1: airflow dags test {PIPELINE} (verify_source → sync → label → summary)"):
            first = sync_counts(run_pipeline(env, log_path))

        # A few more: one new image for four digits and one unlabeled image.
        more = digit_objects(per_label=1, unlabeled=1, start=PER_LABEL, prefix=PREFIX)
        added = {k: v for k, v in more.items() if k.split("/")[1] in {"0", "3", "7", "unlabeled"}}
        put_objects(client, BUCKET, added)
        say(f"      added {len(added)} objects to the bucket: " + ", ".join(sorted(added)))

        with Step(f"run 2: airflow dags test {PIPELINE} after adding {len(added)} objects"):
            second = sync_counts(run_pipeline(env, log_path))

        # The check: run 2 imported exactly the added objects.
        expected_first = {"listed": len(keys), "new": len(keys), "failed": 0}
        expected_second = {
            "listed": len(keys) + len(added),
            "new": len(added),
            "unchanged": len(keys),
            "updated": 0,
            "duplicates": 0,
            "failed": 0,
        }
        wrong = [
            f"run 1 {k}={first.get(k)} (expected {v})"
            for k, v in expected_first.items()
            if first.get(k) != v
        ]
        wrong += [
            f"run 2 {k}={second.get(k)} (expected {v})"
            for k, v in expected_second.items()
            if second.get(k) != v
        ]
        if wrong:
            say("      MISMATCH: " + "; ".join(wrong))
            return 1
        say(
            f"\nOK: run 1 imported {first['new']} of {first['listed']} objects; run 2 listed "
            f"{second['listed']} and imported only the {second['new']} added ones "
            f"({second['unchanged']} unchanged)."
        )

        with Step(f"train project {PIPELINE} once: edgeloop train {PIPELINE} --impulse {IMPULSE}"):
            trained = json.loads(
                edgeloop_cli(
                    "train", PIPELINE, "--impulse", str(REPO_ROOT / IMPULSE), "--json",
                    env=env, log_path=log_path,
                )
            )  # fmt: skip
            say(
                f"      model {trained['model']}: validation accuracy "
                f"{trained['metrics']['validation_accuracy']:.4f}, test accuracy "
                f"{trained['metrics']['test_accuracy']:.4f}"
            )

        with Step(
            f"run 3: airflow dags test {ACTIONS_PIPELINE} (the seed's five steps: sync → "
            "explorer → retrain → version → int8 zip)"
        ):
            actions = run_actions(env, log_path)
        if not report_actions(actions):
            return 1
        # the research pipeline: block steps over the catalog (scripts/demo_health.py)
        from demo_health import run_health_study

        say(
            "[+] research pipeline: airflow dags test health-study (sorter → checklist → "
            "combiner → RMS) ..."
        )
        t_study = time.monotonic()
        if not run_health_study(env, log_path, server.client(), say):
            return 1
        say(f"      done in {time.monotonic() - t_study:.1f} s")
    except KeyboardInterrupt:
        say("\ninterrupted; stopping what the demo started")
        return 130
    except (CommandError, subprocess.TimeoutExpired) as exc:
        say(f"\nFAILED: {exc}\n--- last lines of {log_path} ---\n{tail(log_path, 60)}")
        return 1
    finally:
        if server is not None:
            server.stop()
    say(f"demo finished in {time.monotonic() - t_start:.0f} s; Airflow's output is in {log_path}.")
    say(
        f"Explore: source {airflow_home}/env.sh; .venv/bin/edgeloop items {PIPELINE} "
        "(or stats, summary); `make up` for the web UI."
    )
    port = os.environ.get("EDGELOOP_UI_PORT", "8080")
    say(
        f"After `make up`, the project page: http://localhost:{port}/edgeloop/projects?project={PIPELINE}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
