"""research-checklist: Great Expectations suites over one data item's four files.

For each file (accelerometer, ppg, polar_h10, labels) one expectation suite,
validated in a single ephemeral GE context; every expectation belongs to one
check, and a check passes when all its expectations pass:

  ei_check_<file>_present     the file exists and parses as CSV
  ei_check_<file>_columns     required columns exist, have numeric/string types, no nulls
  ei_check_<file>_timestamps  timestamps strictly increasing (labels: starts increasing,
                              every end after its start)
  ei_check_<file>_ranges      plausible values (|acc| <= 16 g, PPG within 0..65535,
                              30 <= HR <= 220, labels from the study's set)
  ei_check_labels_contiguous  every label ends where the next starts (gap <= --max-label-gap-ms)

A check whose file is missing (or whose columns are missing) is not written:
the failing _present (or _columns) check already says why. The result goes to
ei-metadata.json with action "replace-checks" (old checks removed), plus
ei_check = 1 only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

FILES = ("accelerometer", "ppg", "polar_h10", "labels")
COLUMNS = {
    "accelerometer": ("timestamp", "x", "y", "z"),
    "ppg": ("timestamp", "ppg"),
    "polar_h10": ("timestamp", "hr"),
    "labels": ("start", "end", "label"),
}
INT_TYPES = ["int64", "Int64", "int32", "Int32"]
NUM_TYPES = [*INT_TYPES, "float64", "Float64", "float32"]
STR_TYPES = ["str"]  # checked value by value on an object column


def expectations_for(kind: str, columns: list[str], args: argparse.Namespace) -> list:
    """(check key, expectation) pairs for one file, given the columns it actually has."""
    import great_expectations as gx

    e = gx.expectations
    req = COLUMNS[kind]
    out: list = []
    for col in req:
        out.append((f"ei_check_{kind}_columns", e.ExpectColumnToExist(column=col)))
    if not all(c in columns for c in req):
        return out  # the dependent checks cannot be evaluated
    for col in req:
        if kind == "labels" and col == "label":
            types = STR_TYPES
        elif col in ("timestamp", "start", "end"):
            types = INT_TYPES
        else:
            types = NUM_TYPES
        out.append(
            (
                f"ei_check_{kind}_columns",
                e.ExpectColumnValuesToBeInTypeList(column=col, type_list=types),
            )
        )
        out.append((f"ei_check_{kind}_columns", e.ExpectColumnValuesToNotBeNull(column=col)))
    if kind == "labels":
        out.append(
            (
                f"ei_check_{kind}_timestamps",
                e.ExpectColumnValuesToBeIncreasing(column="start", strictly=True),
            )
        )
        out.append(
            (
                f"ei_check_{kind}_timestamps",
                e.ExpectColumnValuesToBeBetween(column="duration_ms", min_value=1),
            )
        )
        out.append(
            (
                f"ei_check_{kind}_ranges",
                e.ExpectColumnValuesToBeInSet(column="label", value_set=args.labels),
            )
        )
        out.append(
            (
                "ei_check_labels_contiguous",
                e.ExpectColumnValuesToBeBetween(
                    column="gap_to_next_ms", min_value=0, max_value=args.max_label_gap_ms
                ),
            )
        )
        return out
    out.append(
        (
            f"ei_check_{kind}_timestamps",
            e.ExpectColumnValuesToBeIncreasing(column="timestamp", strictly=True),
        )
    )
    out.append(
        (
            f"ei_check_{kind}_timestamps",
            e.ExpectColumnValuesToBeBetween(
                column="timestamp", min_value=946684800000, max_value=4102444800000
            ),
        )
    )  # 2000..2100 in ms
    if kind == "accelerometer":
        for axis in ("x", "y", "z"):
            out.append(
                (
                    f"ei_check_{kind}_ranges",
                    e.ExpectColumnValuesToBeBetween(column=axis, min_value=-16, max_value=16),
                )
            )
    elif kind == "ppg":
        out.append(
            (
                f"ei_check_{kind}_ranges",
                e.ExpectColumnValuesToBeBetween(column="ppg", min_value=0, max_value=65535),
            )
        )
        out.append(
            (
                f"ei_check_{kind}_ranges",
                e.ExpectColumnStdevToBeBetween(column="ppg", min_value=1e-6),
            )
        )
    elif kind == "polar_h10":
        out.append(
            (
                f"ei_check_{kind}_ranges",
                e.ExpectColumnValuesToBeBetween(
                    column="hr", min_value=args.min_hr, max_value=args.max_hr
                ),
            )
        )
    return out


def run_checklist(in_dir: Path, args: argparse.Namespace) -> tuple[dict[str, bool], list[str]]:
    """Validate the item's files; returns ({check key: passed}, human-readable failures)."""
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(name="item")
    checks: dict[str, bool] = {}
    failures: list[str] = []
    for kind in FILES:
        path = in_dir / f"{kind}.csv"
        present = f"ei_check_{kind}_present"
        if not path.is_file():
            checks[present] = False
            failures.append(f"{path.name}: missing")
            continue
        try:
            frame = pd.read_csv(path)
        except (ValueError, OSError) as exc:  # pandas' ParserError/EmptyDataError are ValueErrors
            checks[present] = False
            failures.append(f"{path.name}: cannot be read as CSV: {exc}")
            continue
        checks[present] = True
        # pandas 3 reads text as its `str` dtype, which GE 1.24's type check does not
        # recognise by name: compare text columns as `object`.
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.StringDtype):
                frame[col] = frame[col].astype(object)
        if kind == "labels" and {"start", "end"} <= set(frame.columns):
            frame["duration_ms"] = frame["end"] - frame["start"]
            frame["gap_to_next_ms"] = frame["start"].shift(-1) - frame["end"]
        suite = context.suites.add(gx.ExpectationSuite(name=kind))
        pairs = expectations_for(kind, list(frame.columns), args)
        for key, expectation in pairs:
            expectation.meta = {"check": key}
            suite.add_expectation(expectation)
        batch = source.add_dataframe_asset(name=kind).add_batch_definition_whole_dataframe("all")
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{kind}-validation", data=batch, suite=suite)
        )
        result = validation.run(batch_parameters={"dataframe": frame})
        for r in result.results:
            cfg = r.expectation_config
            key = (cfg.meta or {}).get("check", f"ei_check_{kind}")
            checks[key] = checks.get(key, True) and bool(r.success)
            if not r.success:
                detail = r.result.get("unexpected_count") if r.result else None
                failures.append(
                    f"{path.name}: {key}: {cfg.type}({cfg.kwargs.get('column', '')})"
                    + (f", {detail} unexpected value(s)" if detail else "")
                )
    return checks, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-directory", required=True)
    parser.add_argument("--out-directory", required=True)
    parser.add_argument("--metadata", default="{}")
    parser.add_argument("--labels", default="sitting,walking,running,biking")
    parser.add_argument("--max-label-gap-ms", type=int, default=1000)
    parser.add_argument("--min-hr", type=float, default=30)
    parser.add_argument("--max-hr", type=float, default=220)
    args, _ = parser.parse_known_args(argv)
    args.labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    started = time.perf_counter()
    in_dir, out_dir = Path(args.in_directory), Path(args.out_directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    checks, failures = run_checklist(in_dir, args)
    for key, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {key}")
    for failure in failures:
        print(f"  - {failure}")
    metadata = {k: "1" if ok else "0" for k, ok in checks.items()}
    metadata["ei_check"] = "1" if all(checks.values()) else "0"
    with open(out_dir / "ei-metadata.json", "w", encoding="utf-8") as fh:
        json.dump({"version": 1, "action": "replace-checks", "metadata": metadata}, fh, indent=2)
    print(
        f"{in_dir.name}: {sum(checks.values())}/{len(checks)} checks passed, "
        f"ei_check={metadata['ei_check']} ({time.perf_counter() - started:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
