"""``edgeloop deploy build``: the command line of the deployment build."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    deploy = subparsers.add_parser("deploy", help="build on-device deployments")
    sub = deploy.add_subparsers(dest="deploy_command", required=True, metavar="SUBCOMMAND")
    build = sub.add_parser(
        "build",
        help="compile a trained Keras model into a verified C++ library zip",
        description="Convert a Keras model to TensorFlow Lite, generate plain C++ for it, "
        "compile and verify it against the reference interpreter, and write LIB.zip "
        "plus report.json beside it.",
    )
    build.add_argument("--model", required=True, help="trained model (.keras)")
    build.add_argument(
        "--representative",
        required=True,
        help=".npz with array x (samples), optional y, x_test, y_test",
    )
    build.add_argument(
        "--labels", required=True, help="comma-separated labels, or a file with one label per line"
    )
    build.add_argument("--type", dest="model_type", choices=("int8", "float32"), default="int8")
    build.add_argument("--out", required=True, help="output zip path")
    build.add_argument(
        "--report", default=None, help="report path (default: report.json beside the zip)"
    )
    build.set_defaults(handler=_build)


def _build(args: argparse.Namespace) -> int:
    from edgeloop.deploy.build import build_library

    report = build_library(
        args.model,
        args.representative,
        args.labels,
        args.model_type,
        args.out,
        report_path=args.report,
    )
    summary = {
        k: report[k]
        for k in (
            "zip",
            "model_type",
            "accuracy",
            "arena_bytes",
            "tflm_arena_bytes",
            "weights_bytes",
            "code_bytes",
            "latency_us",
        )
    }
    print(json.dumps(summary, indent=2))
    return 0
