"""The `edgeloop` command line.

Each area of the package registers its own subcommands through a
``register(subparsers)`` function in the module listed in ``COMMAND_MODULES``;
handlers import heavy libraries lazily, so ``edgeloop --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edgeloop.errors import EdgeloopError

COMMAND_MODULES: tuple[str, ...] = (
    "edgeloop.commands",
    "edgeloop.catalog.cli",
    "edgeloop.deploy.cli",
    "edgeloop.blocks.cli",
    "edgeloop.research.cli",
    "edgeloop.training.cli",
    "edgeloop.runs.cli",
    "edgeloop.web.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeloop", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except EdgeloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
