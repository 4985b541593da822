"""``edgeloop train / retrain / explore / label / models / versions / version / deployments /
deployment``: the command line of the model side of the loop."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("train", help="train a project's model with an impulse")
    p.add_argument("project")
    p.add_argument("--impulse", required=True, help="impulse JSON (see include/impulses/)")
    _json_flag(p)
    p.set_defaults(handler=cmd_train)

    p = subparsers.add_parser(
        "retrain", help="retrain with the stored impulse; promote through the quality gate"
    )
    p.add_argument("project")
    p.add_argument(
        "--max-drop",
        type=float,
        default=0.01,
        help="largest test-accuracy drop still promoted (default 0.01)",
    )
    _json_flag(p)
    p.set_defaults(handler=cmd_retrain)

    p = subparsers.add_parser("explore", help="refresh the data explorer map (PNG + points)")
    p.add_argument("project")
    p.add_argument("--impulse", help="impulse for the features (only before any training)")
    p.add_argument("--points", action="store_true", help="print every point (with --json)")
    _json_flag(p)
    p.set_defaults(handler=cmd_explore)

    p = subparsers.add_parser("label", help="label items from the explorer's suggestions")
    p.add_argument("project")
    p.add_argument("--accept-suggestions", action="store_true", required=True)
    p.add_argument("--min-confidence", type=float, default=0.9)
    _json_flag(p)
    p.set_defaults(handler=cmd_label)

    for name, what in (("models", "models"), ("versions", "versions"), ("deployments", "deps")):
        p = subparsers.add_parser(name, help=f"list a project's {name}")
        p.add_argument("project")
        _json_flag(p)
        p.set_defaults(handler=cmd_list, what=what)

    version = subparsers.add_parser("version", help="create, show, diff or restore a version")
    sub = version.add_subparsers(dest="version_command", required=True, metavar="SUBCOMMAND")
    p = sub.add_parser("create", help="snapshot the project now")
    p.add_argument("project")
    p.add_argument("--config", help="pipeline config JSON to store with the version")
    p.add_argument("--description")
    p.add_argument("--deployment", type=int, action="append", help="deployment number to include")
    p.set_defaults(handler=cmd_version_create)
    p = sub.add_parser("show", help="a version and its manifest")
    p.add_argument("project")
    p.add_argument("number", type=int)
    p.add_argument("--items", action="store_true", help="include every item of the manifest")
    p.set_defaults(handler=cmd_version_show)
    p = sub.add_parser("diff", help="items and metrics changed from version A to B")
    p.add_argument("project")
    p.add_argument("a", type=int)
    p.add_argument("b", type=int)
    p.set_defaults(handler=cmd_version_diff)
    p = sub.add_parser("restore", help="write a version's dataset and artifacts to a folder")
    p.add_argument("project")
    p.add_argument("number", type=int)
    p.add_argument("--to", required=True, help="a new or empty folder")
    p.set_defaults(handler=cmd_version_restore)

    deployment = subparsers.add_parser("deployment", help="build, publish or export a deployment")
    sub = deployment.add_subparsers(dest="deployment_command", required=True, metavar="SUBCOMMAND")
    p = sub.add_parser("build", help="build the verified C++ library of a model")
    p.add_argument("project")
    p.add_argument("--type", dest="model_type", choices=("int8", "float32"), default="int8")
    p.add_argument("--model", type=int, help="model number (default: the current model)")
    p.add_argument("--no-publish", action="store_true", help="store without publishing")
    p.set_defaults(handler=cmd_deployment_build)
    p = sub.add_parser("publish", help="make a deployment the project's current one")
    p.add_argument("project")
    p.add_argument("number", type=int)
    p.set_defaults(handler=cmd_deployment_publish)
    p = sub.add_parser("export", help="write a deployment's zip")
    p.add_argument("project")
    p.add_argument("number", type=int)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_deployment_export)


def _print(doc: Any) -> None:
    print(json.dumps(doc, indent=1, sort_keys=True, default=str))


def _model_line(result: dict[str, Any]) -> str:
    m = result["metrics"]
    return (
        f"model {result['model']}: validation accuracy {m['validation_accuracy']}, "
        f"test accuracy {m['test_accuracy']} "
        f"({m['rows']['training']} training / {m['rows']['validation']} validation / "
        f"{m['rows']['testing']} testing rows)"
    )


def cmd_train(args: argparse.Namespace) -> int:
    from edgeloop.training.train import train

    result = train(args.project, args.impulse)
    if args.json:
        _print(result)
    else:
        print(_model_line(result))
        print(f"confusion matrix: {result['confusion_png']}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from edgeloop.training.train import retrain

    result = retrain(args.project, max_drop=args.max_drop)
    if args.json:
        _print(result)
    else:
        print(_model_line(result))
        state = "promoted (current)" if result["promoted"] else "NOT promoted"
        print(f"quality gate: {state}: {result['gate']['reason']}")
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from edgeloop.training.explorer import explorer_points_of, refresh_explorer

    result = refresh_explorer(args.project, impulse=args.impulse)
    if args.points:
        result["points_detail"] = explorer_points_of(args.project)
    if args.json:
        _print(result)
    else:
        print(
            f"explorer map {result['map']}: {result['points']} points ({result['new']} new, "
            f"{result['unlabeled']} unlabeled, {result['suggestions']} label suggestions)"
        )
        print(f"png: {result['png']}")
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from edgeloop.training.explorer import accept_suggestions

    result = accept_suggestions(args.project, min_confidence=args.min_confidence)
    if args.json:
        _print(result)
    else:
        for name in result["items"]:
            print(name)
        print(
            f"{result['applied']} item(s) labeled from suggestions with confidence >= "
            f"{args.min_confidence}",
            file=sys.stderr,
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from edgeloop.catalog.store import Catalog
    from edgeloop.training import registry

    catalog = Catalog.from_settings()
    if args.what == "models":
        rows = registry.list_models(catalog, args.project)
    elif args.what == "versions":
        rows = registry.list_versions(catalog, args.project)
    else:
        rows = registry.list_deployments(catalog, args.project)
    if args.json:
        _print(rows)
        return 0
    for r in rows:
        if args.what == "models":
            m = r["metrics"]
            gate = r["gate"]
            print(
                f"{r['number']}\t{r['kind']}\t{'current' if r['current'] else '-'}\t"
                f"val {m['validation_accuracy']}\ttest {m['test_accuracy']}\t"
                f"{r['created_at']}\t{(gate or {}).get('reason', '')}"
            )
        elif args.what == "versions":
            s = r["summary"]
            print(
                f"{r['number']}\tmodel {r['model_number'] or '-'}\t{s['items']} items\t"
                f"test {s['test_accuracy']}\t{r['created_at']}\t{r['description'] or ''}"
            )
        else:
            s = r["summary"]
            print(
                f"{r['number']}\tmodel {r['model_number']}\t{r['model_type']}\t"
                f"{'current' if r['current'] else ('published' if r['published_at'] else '-')}"
                f"\taccuracy {json.dumps(s.get('accuracy'))}\t{r['created_at']}"
            )
    print(f"{len(rows)} {args.command}", file=sys.stderr)
    return 0


def cmd_version_create(args: argparse.Namespace) -> int:
    from edgeloop.training.versions import create_version

    _print(
        create_version(
            args.project,
            config=args.config,
            description=args.description,
            deployment_numbers=args.deployment,
        )
    )
    return 0


def cmd_version_show(args: argparse.Namespace) -> int:
    from edgeloop.training.versions import show_version

    doc = show_version(args.project, args.number)
    if not args.items:
        doc["manifest"]["items"] = f"{len(doc['manifest']['items'])} items (--items to list)"
    _print(doc)
    return 0


def cmd_version_diff(args: argparse.Namespace) -> int:
    from edgeloop.training.versions import diff_versions

    _print(diff_versions(args.project, args.a, args.b))
    return 0


def cmd_version_restore(args: argparse.Namespace) -> int:
    from edgeloop.training.versions import restore_version

    _print(restore_version(args.project, args.number, args.to))
    return 0


def cmd_deployment_build(args: argparse.Namespace) -> int:
    from edgeloop.training.deployments import build_deployment

    _print(
        build_deployment(
            args.project,
            model_type=args.model_type,
            model=args.model,
            publish=not args.no_publish,
        )
    )
    return 0


def cmd_deployment_publish(args: argparse.Namespace) -> int:
    from edgeloop.training.deployments import publish_deployment

    _print(publish_deployment(args.project, args.number))
    return 0


def cmd_deployment_export(args: argparse.Namespace) -> int:
    from edgeloop.training.deployments import export_deployment

    print(export_deployment(args.project, args.number, args.out))
    return 0
