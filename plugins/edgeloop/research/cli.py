"""`edgeloop sample-data health-study --subjects N --out DIR`."""

from __future__ import annotations

import argparse
from typing import Any

from edgeloop.errors import ConfigError


def register(subparsers: Any) -> None:
    sample = subparsers.add_parser("sample-data", help="write synthetic sample data sets")
    sub = sample.add_subparsers(dest="sample_command", required=True, metavar="DATASET")
    health = sub.add_parser(
        "health-study",
        help="a multi-source activity study (data lake + upload portal + master sheet)",
        description="Write a synthetic health study: accelerometer + PPG in a data lake by "
        "internal ID, Polar H10 heart rate and activity labels in a portal by "
        "study ID, and a master sheet mapping the two.",
    )
    health.add_argument("--subjects", type=int, default=10)
    health.add_argument("--out", required=True, metavar="DIR")
    health.add_argument(
        "--minutes", type=float, default=90.0, help="session length per subject (default 90)"
    )
    health.add_argument("--accel-hz", type=float, default=50.0)
    health.add_argument("--ppg-hz", type=float, default=25.0)
    health.add_argument("--seed", type=int, default=2022)
    health.add_argument(
        "--no-broken", action="store_true", help="do not break subjects AMS_002..AMS_004"
    )
    health.set_defaults(handler=health_study_command)


def health_study_command(args: argparse.Namespace) -> int:
    from edgeloop.research.sample_data import generate_health_study

    if args.subjects < 1:
        raise ConfigError("must be at least 1", path="--subjects", value=args.subjects)
    if args.minutes <= 0 or args.accel_hz <= 0 or args.ppg_hz <= 0:
        raise ConfigError(
            "must be positive",
            path="--minutes/--accel-hz/--ppg-hz",
            value=(args.minutes, args.accel_hz, args.ppg_hz),
        )
    study = generate_health_study(
        args.out,
        args.subjects,
        minutes=args.minutes,
        accel_hz=args.accel_hz,
        ppg_hz=args.ppg_hz,
        seed=args.seed,
        broken=not args.no_broken,
    )
    for s in study.subjects:
        print(f"{s.study_id}  {s.internal_id}  {s.broken or 'ok'}")
    print(f"wrote {len(study.subjects)} subjects to {study.root}")
    return 0
