"""`make demo`, part 2: the research pipeline (include/pipelines/health-study.json).

A small synthetic health study (5 subjects, 3 minutes each; AMS_002..AMS_004 broken on
purpose) goes into ``s3://edgeloop-study/`` (data lake, portal uploads, master sheet);
``airflow dags test health-study`` runs sorter → checklist → combiner → RMS; the
per-subject checklist (✔/✘), the combined dataset's items and the project's counts are
printed, and the result is checked: only the good subjects are combined.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgeloop_dev.devenv import CommandError, bin_path, run_logged

PIPELINE = "health-study"
BUCKET = "edgeloop-study"
SUBJECTS = 5
MINUTES = 3.0
GOOD = ["AMS_001", "AMS_005"]


def _cli(*args: str, env: dict[str, str], log_path: Path) -> str:
    with open(log_path, "ab") as err:
        err.write(f"\n$ edgeloop {' '.join(args)}\n".encode())
        err.flush()
        proc = subprocess.run(
            [bin_path("edgeloop"), *args], env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )
    if proc.returncode != 0:
        raise CommandError(["edgeloop", *args], proc.returncode, log_path)
    return proc.stdout


def upload_study(client) -> list[str]:
    """Generate the study and put it in the bucket; returns the subjects' study ids."""
    from edgeloop.research.sample_data import generate_health_study

    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    with tempfile.TemporaryDirectory(prefix="edgeloop-study-") as tmp:
        study = generate_health_study(Path(tmp) / "study", SUBJECTS, minutes=MINUTES)
        for path in sorted(p for p in study.root.rglob("*") if p.is_file()):
            client.put_object(
                Bucket=BUCKET, Key=str(path.relative_to(study.root)), Body=path.read_bytes()
            )
        return [f"{s.study_id} ({s.broken or 'ok'})" for s in study.subjects]


def run_health_study(
    env: dict[str, str], log_path: Path, client, say: Callable[[str], None]
) -> bool:
    """Upload, run the pipeline, print what it made; False when the result is wrong."""
    subjects = upload_study(client)
    say(f"      s3://{BUCKET}/: {SUBJECTS} subjects: " + ", ".join(subjects))
    run_logged(
        [bin_path("airflow"), "dags", "test", PIPELINE], env=env, log_path=log_path, timeout=900
    )
    say("      checklist per subject (dataset 'AMS sorted'):")
    for line in _cli("items", "AMS sorted", "--checklist", env=env, log_path=log_path).splitlines():
        say(f"        {line}")
    combined = json.loads(_cli("items", "AMS Activity 2022", "--json", env=env, log_path=log_path))
    say("      dataset 'AMS Activity 2022':")
    for item in combined:
        files = ", ".join(f"{f['name']} ({f['size']} B)" for f in item["files"])
        say(f"        {item['name']}: {files}")
    stats = json.loads(_cli("stats", PIPELINE, "--json", env=env, log_path=log_path))
    say(f"      project {PIPELINE}: {sum(stats['label'].values())} item(s), per category "
        + ", ".join(f"{k} {v}" for k, v in stats["category"].items()))  # fmt: skip
    summary = json.loads(_cli("summary", PIPELINE, "--json", env=env, log_path=log_path))
    say(f"      run summary: blocks {summary.get('blocks')}, checklist {summary.get('checklist')}")
    ok = sorted(i["name"] for i in combined) == GOOD and sum(stats["label"].values()) == len(GOOD)
    if not ok:
        say(f"      MISMATCH: expected {GOOD} combined and {len(GOOD)} project items")
    return ok
