"""`edgeloop` subcommands to run a pipeline from code: run, stop, snippet."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def conf_item(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; the value is JSON when it parses (``true``, ``3``, ``{...}``), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="trigger a pipeline run through the Airflow REST API (EDGELOOP_API_*)"
    )
    p.add_argument("pipeline", help="the pipeline id (its DAG id)")
    p.add_argument("--wait", action="store_true", help="follow the run, then print the summary")
    p.add_argument(
        "--ignore-last-successful-run",
        action="store_true",
        help="process everything, not only what changed since the last successful run",
    )
    p.add_argument(
        "--conf",
        action="append",
        type=conf_item,
        default=[],
        metavar="KEY=VALUE",
        help="run conf entry (JSON value or text); repeatable",
    )
    p.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_run)

    p = subparsers.add_parser("stop", help="stop the running run of a pipeline (it ends failed)")
    p.add_argument("pipeline")
    p.set_defaults(handler=cmd_stop)

    p = subparsers.add_parser("snippet", help="print a sample that triggers a pipeline from code")
    p.add_argument("pipeline")
    p.add_argument("--lang", choices=["curl", "python", "node"], default="curl")
    p.set_defaults(handler=cmd_snippet)


def run_conf(args: argparse.Namespace) -> dict[str, Any]:
    conf = dict(args.conf)
    if args.ignore_last_successful_run:
        conf["ignoreLastSuccessfulRun"] = True
    return conf


def cmd_run(args: argparse.Namespace) -> int:
    from edgeloop.notify.results import run_url
    from edgeloop.runs.client import TaskEnd, api_client, run_summary, trigger_run, wait_for_run
    from edgeloop.settings import get_settings

    settings = get_settings()
    with api_client(settings) as client:
        run = trigger_run(client, args.pipeline, run_conf(args))
        run_id = run.dag_run_id
        print(f"triggered run {run_id} of {args.pipeline}")
        print(f"  {run_url(settings.api_url, args.pipeline, run_id)}")
        if not args.wait:
            return 0

        def show(end: TaskEnd) -> None:
            index = f"[{end.map_index}]" if end.map_index >= 0 else ""
            took = f"{end.duration:.1f} s" if end.duration is not None else ""
            print(f"  {end.task_id + index:<24} {end.state:<16} {took}", flush=True)

        state = wait_for_run(client, args.pipeline, run_id, on_task_end=show, poll=args.poll)
        summary = run_summary(client, args.pipeline, run_id)
    print(f"run {run_id} of {args.pipeline}: {state}")
    summary = summary or _recorded_summary(args.pipeline, run_id)
    if summary:
        print(_format(summary))
    else:
        print("  (no summary: the summary task did not complete)")
    return 0 if state == "success" else 1


def _recorded_summary(pipeline: str, run_id: str) -> dict[str, Any] | None:
    """The catalog's record of the run, when this machine sees the catalog."""
    try:
        from edgeloop.catalog.store import Catalog

        last = Catalog.from_settings().last_run(pipeline)
    except Exception:  # the catalog may live elsewhere: the summary is optional
        return None
    return last if last and last.get("run_id") == run_id else None


def _format(summary: dict[str, Any]) -> str:
    from edgeloop.summary import format_summary

    try:
        return format_summary(summary)
    except KeyError:
        return json.dumps(summary, indent=1, default=str)


def cmd_stop(args: argparse.Namespace) -> int:
    from edgeloop.runs.client import active_runs, api_client, stop_run

    with api_client() as client:
        runs = active_runs(client, args.pipeline)
        if not runs:
            print(f"no queued or running run of {args.pipeline}", file=sys.stderr)
            return 1
        for run in runs:
            stopped = stop_run(client, args.pipeline, run.dag_run_id)
            what = f"failed task(s) {', '.join(stopped)}" if stopped else "marked the run failed"
            print(f"stopped run {run.dag_run_id} of {args.pipeline}: {what}")
    return 0


def cmd_snippet(args: argparse.Namespace) -> int:
    from edgeloop.runs.snippets import snippet

    sys.stdout.write(snippet(args.pipeline, args.lang))
    return 0
