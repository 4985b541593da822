"""`edgeloop` subcommands over the catalog: items (with the filter language), stats."""

from __future__ import annotations

import argparse
import json
import sys

from edgeloop.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "items",
        help="list a dataset's items, or the items a filter selects",
        description="List items. DATASET may be left out when the filter names datasets "
        "(dataset = '...', dataset LIKE '...'). Filter fields: dataset, bucket_id, "
        "bucket_name, bucket_path, id, name, total_file_count, total_file_size, created, "
        "metadata->KEY, file_name, file_names; see edgeloop.catalog.filter.",
    )
    p.add_argument("dataset", nargs="?", metavar="DATASET", help="the dataset (project)")
    p.add_argument(
        "--filter",
        metavar="QUERY",
        help="e.g. \"dataset = 'AMS sorted' AND file_names CONTAINS 'ppg.csv'\"",
    )
    p.add_argument("--json", action="store_true", help="one JSON array, with the files")
    p.add_argument("--deleted", action="store_true", help="include deleted items")
    p.add_argument(
        "--checklist",
        action="store_true",
        help="each item's checklist: ✔/✘ overall (ei_check) and per check (ei_check_*)",
    )
    p.set_defaults(handler=cmd_items)

    p = subparsers.add_parser("stats", help="item counts per label and category")
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_stats)


def cmd_items(args: argparse.Namespace) -> int:
    from edgeloop.catalog.filter import compile_filter, find_items
    from edgeloop.catalog.store import Catalog

    flt = compile_filter(args.filter, path="--filter") if args.filter is not None else None
    if args.dataset is None and (flt is None or "dataset" not in flt.fields):
        raise ConfigError(
            "name the dataset",
            path="items",
            expected="a DATASET argument or a --filter on dataset (dataset = '...')",
            value=args.filter,
        )
    rows = find_items(
        Catalog.from_settings().engine, flt, dataset=args.dataset, include_deleted=args.deleted
    )
    if args.json:
        print(json.dumps(rows, default=str, indent=1))
        return 0
    if args.checklist:
        for r in rows:
            name = r["name"] if args.dataset else f"{r['dataset']}/{r['name']}"
            print(checklist_line(name, r["metadata"]))
        print(f"{len(rows)} item(s)", file=sys.stderr)
        return 0
    for r in rows:
        deleted = " (deleted)" if r["deleted_at"] else ""
        line = (
            f"{r['name']}\t{r['label'] or '-'}\t{r['category'] or '-'}\t{r['sha256'][:12]}"
            f"\t{r['source_key'] or '-'}\t{json.dumps(r['metadata'])}"
        )
        if args.dataset is None:
            line = f"{r['dataset']}\t{line}"
        if flt is not None and flt.selects_files:
            line += "\t" + ",".join(f["name"] for f in r["files"])
        print(line + deleted)
    print(f"{len(rows)} item(s)", file=sys.stderr)
    return 0


def _mark(value: object) -> str:
    return "✔" if str(value) == "1" else "✘"


def checklist_line(name: str, metadata: dict[str, str]) -> str:
    """``NAME  ✔|✘  ✔ check ✘ check ...`` (ei_check overall, then each ei_check_KEY)."""
    checks = sorted(k for k in metadata if k.startswith("ei_check_"))
    if "ei_check" not in metadata and not checks:
        return f"{name}  (no checklist)"
    overall = _mark(metadata["ei_check"]) if "ei_check" in metadata else "?"
    marks = "  ".join(f"{_mark(metadata[k])} {k[len('ei_check_') :]}" for k in checks)
    return f"{name}  {overall}  {marks}".rstrip()


def cmd_stats(args: argparse.Namespace) -> int:
    from edgeloop.catalog.store import Catalog
    from edgeloop.summary import shown_counts

    counts = shown_counts(Catalog.from_settings().counts(args.dataset))
    if args.json:
        print(json.dumps(counts, indent=1))
        return 0
    print(f"project {args.dataset}: {sum(counts['label'].values())} item(s)")
    for kind in ("label", "category"):
        for key, n in counts[kind].items():
            print(f"  {kind:<9} {key:<20} {n}")
    return 0
