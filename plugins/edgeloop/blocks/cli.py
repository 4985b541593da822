"""`edgeloop block run BLOCK_DIR ...`: run a transformation block on one input."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from edgeloop.errors import ConfigError


def register(subparsers: Any) -> None:
    block = subparsers.add_parser("block", help="transformation blocks")
    sub = block.add_subparsers(dest="block_command", required=True, metavar="SUBCOMMAND")
    run = sub.add_parser(
        "run",
        help="run a block folder on a file, a directory or standalone",
        description="Run a transformation block. Prints the item's resulting metadata as JSON.",
    )
    run.add_argument("block_dir", metavar="BLOCK_DIR")
    src = run.add_mutually_exclusive_group()
    src.add_argument("--in-file", metavar="F")
    src.add_argument("--in-directory", metavar="D")
    run.add_argument("--out-directory", metavar="O", required=True)
    run.add_argument(
        "--metadata",
        metavar="JSON",
        default="{}",
        help="the item's metadata as a JSON object (scalar values), or @FILE",
    )
    run.add_argument(
        "--param",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a parameter value (repeatable)",
    )
    run.add_argument(
        "--extra-args",
        metavar="ARGS",
        default="",
        help="extra command line arguments for the block, as one string",
    )
    run.add_argument("--runtime", choices=("local", "docker"), default="local")
    run.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop the block after this long (default: info.timeLimitSeconds or 3600)",
    )
    run.add_argument("--hmac-key", default="")
    run.add_argument(
        "--last-successful-run", metavar="ISO8601", help="EI_LAST_SUCCESSFUL_RUN for the block"
    )
    run.set_defaults(handler=run_command)


def _parse_metadata(text: str) -> dict[str, str]:
    from edgeloop.blocks.metadata import ITEM_INFO_KEY, value_text

    source = "--metadata"
    if text.startswith("@"):
        source = text[1:]
        try:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=source) from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}", path=source, value=text) from exc
    if not isinstance(value, dict):
        raise ConfigError("not a JSON object", path=source, expected="{...}", value=value)
    # as in ei-metadata.json: scalars stored as strings, dataItemInfo ignored
    return {
        k: value_text(v, file=None, path=f"{source}: $.{k}")
        for k, v in value.items()
        if k != ITEM_INFO_KEY
    }


def _parse_params(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(
                "malformed --param", path="--param", expected="NAME=VALUE", value=pair
            )
        out[name] = value
    return out


def run_command(args: argparse.Namespace) -> int:
    from edgeloop.blocks.runner import run_block

    try:
        extra = shlex.split(args.extra_args)
    except ValueError as exc:
        raise ConfigError(
            f"cannot split: {exc}", path="--extra-args", value=args.extra_args
        ) from exc
    result = run_block(
        args.block_dir,
        in_file=args.in_file,
        in_directory=args.in_directory,
        out_directory=args.out_directory,
        metadata=_parse_metadata(args.metadata),
        params=_parse_params(args.param),
        extra_args=extra,
        runtime=args.runtime,
        time_limit=args.time_limit,
        hmac_key=args.hmac_key,
        last_successful_run=args.last_successful_run,
    )
    doc: dict[str, Any] = {"metadata": result.metadata}
    if result.item_metadata:
        doc["items"] = result.item_metadata
    json.dump(doc, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0
