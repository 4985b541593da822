"""`edgeloop` subcommands of the pipeline core: validate, db, encrypt-secret, summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("validate", help="validate pipeline config files")
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="config files or folders (default: EDGELOOP_PIPELINES_DIR)",
    )
    p.set_defaults(handler=cmd_validate)

    p = subparsers.add_parser("db", help="the catalog database")
    p.add_argument(
        "action",
        choices=["upgrade", "current"],
        help="upgrade: apply the migrations (safe to run concurrently); "
        "current: print the schema revision",
    )
    p.set_defaults(handler=cmd_db)

    p = subparsers.add_parser(
        "encrypt-secret", help="encrypt a secret read from standard input with Airflow's key"
    )
    p.set_defaults(handler=cmd_encrypt_secret)

    p = subparsers.add_parser("summary", help="the last run summary of a pipeline")
    p.add_argument("pipeline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_summary)


def cmd_validate(args: argparse.Namespace) -> int:
    """Check configs exactly as the DAG file builds them: whatever would become an
    invalid-config DAG is reported here (file, JSON path, expected, received)."""
    from edgeloop.config import config_files
    from edgeloop.settings import get_settings

    files: list[Path] = []
    for path in args.paths or [get_settings().pipelines_dir]:
        try:
            files += config_files(path) if path.is_dir() else [path]
        except OSError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 1
    if not files:
        print("no pipeline configs found", file=sys.stderr)
        return 1
    from edgeloop.dag_factory import check_files

    errors = check_files(files)
    for file in files:
        if str(file) in errors:
            for error in errors[str(file)]:
                print(f"error: {error}", file=sys.stderr)
        else:
            print(f"ok: {file}")
    return 1 if errors else 0


def cmd_db(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from edgeloop.catalog.store import current_revision, engine_for, head_revision, upgrade
    from edgeloop.settings import get_settings

    url = get_settings().catalog_url
    shown = sa.make_url(url).render_as_string(hide_password=True)
    if args.action == "current":
        with engine_for(url).connect() as conn:
            current = current_revision(conn)
        print(f"{shown}: revision {current or '(empty)'} (head {head_revision()})")
        return 0 if current == head_revision() else 1
    before, after = upgrade(url)
    print(
        f"{shown}: {'already at' if before == after else f'upgraded from {before} to'} "
        f"revision {after}"
    )
    return 0


def cmd_encrypt_secret(args: argparse.Namespace) -> int:
    from edgeloop.secrets import encrypt_secret

    print(encrypt_secret(sys.stdin.read().strip()))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from edgeloop.catalog.store import Catalog
    from edgeloop.summary import format_summary

    summary = Catalog.from_settings().last_run(args.pipeline)
    if summary is None:
        print(f"no run of pipeline '{args.pipeline}' is recorded yet", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return 0
