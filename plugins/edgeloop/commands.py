"""`edgeloop` subcommands of the pipeline core: validate, encrypt-secret, items, stats, summary."""

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

    p = subparsers.add_parser("items", help="list a project's items")
    p.add_argument("project")
    p.add_argument("--json", action="store_true", help="one JSON array")
    p.add_argument("--deleted", action="store_true", help="include deleted items")
    p.set_defaults(handler=cmd_items)

    p = subparsers.add_parser("stats", help="item counts per label and category")
    p.add_argument("project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_stats)

    p = subparsers.add_parser("summary", help="the last run summary of a pipeline")
    p.add_argument("pipeline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_summary)


def cmd_validate(args: argparse.Namespace) -> int:
    from edgeloop.config import check_pipeline, config_files
    from edgeloop.settings import get_settings

    files: list[Path] = []
    for path in args.paths or [get_settings().pipelines_dir]:
        files += config_files(path) if path.is_dir() else [path]
    if not files:
        print("no pipeline configs found", file=sys.stderr)
        return 1
    bad = 0
    for file in files:
        errors = check_pipeline(file)
        if errors:
            bad += 1
            for error in errors:
                print(f"error: {error}", file=sys.stderr)
        else:
            print(f"ok: {file}")
    return 1 if bad else 0


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


def cmd_items(args: argparse.Namespace) -> int:
    from edgeloop.catalog.store import Catalog

    rows = Catalog.from_settings().list_items(args.project, include_deleted=args.deleted)
    if args.json:
        print(json.dumps(rows, default=str, indent=1))
        return 0
    for r in rows:
        deleted = " (deleted)" if r["deleted_at"] else ""
        print(
            f"{r['name']}\t{r['label'] or '-'}\t{r['category'] or '-'}\t{r['sha256'][:12]}"
            f"\t{r['source_key'] or '-'}\t{json.dumps(r['metadata'])}{deleted}"
        )
    print(f"{len(rows)} item(s)", file=sys.stderr)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from edgeloop.catalog.store import Catalog

    counts = Catalog.from_settings().counts(args.project)
    if args.json:
        print(json.dumps(counts, indent=1))
        return 0
    print(f"project {args.project}: {sum(counts['label'].values())} item(s)")
    for kind in ("label", "category"):
        for key, n in counts[kind].items():
            print(f"  {kind:<9} {key or '(none)':<20} {n}")
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
