"""research-sorter: one folder per study ID from a data lake, a portal and a master sheet.

OUT/<STUDY_ID>/accelerometer.csv, ppg.csv      from LAKE/<INTERNAL_ID>/
OUT/<STUDY_ID>/polar_h10.csv, labels.csv       from PORTAL/<STUDY_ID>_polar_h10.csv, _labels.csv
OUT/<STUDY_ID>/ei-metadata.json                the master sheet's row (action "add")

Files are copied only when missing or changed, so re-running is cheap and
idempotent. Missing source files are reported and skipped (the checklist
block flags them). Exit code 1 when the master sheet is unusable.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import json
import os
import shutil
import sys
from pathlib import Path

LAKE_FILES = ("accelerometer.csv", "ppg.csv")
PORTAL_FILES = ("polar_h10.csv", "labels.csv")
REQUIRED_COLUMNS = ("study_id", "internal_id")


def read_master_sheet(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; has {columns}")
        rows = []
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if not row["study_id"] or not row["internal_id"]:
                raise ValueError(f"{path}: line {line}: empty study_id or internal_id")
            rows.append(row)
    seen: set[str] = set()
    for row in rows:
        if row["study_id"] in seen:
            raise ValueError(f"{path}: study_id {row['study_id']!r} appears twice")
        seen.add(row["study_id"])
    return rows


def copy_if_changed(src: Path, dst: Path) -> bool:
    if dst.exists() and filecmp.cmp(src, dst, shallow=False):
        return False
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return True


def sort_study(lake: Path, portal: Path, sheet: Path, out: Path) -> dict[str, list[str]]:
    """Sort every master-sheet row into OUT/<study_id>/; returns {study_id: missing files}."""
    rows = read_master_sheet(sheet)
    report: dict[str, list[str]] = {}
    for row in rows:
        study_id, internal_id = row["study_id"], row["internal_id"]
        item = out / study_id
        item.mkdir(parents=True, exist_ok=True)
        sources = {name: lake / internal_id / name for name in LAKE_FILES}
        sources.update({name: portal / f"{study_id}_{name}" for name in PORTAL_FILES})
        missing, copied = [], 0
        for name, src in sources.items():
            if src.is_file():
                copied += copy_if_changed(src, item / name)
            else:
                missing.append(name)
                stale = item / name
                if stale.exists():  # the source is gone: do not keep an old copy
                    stale.unlink()
        metadata = {k: v for k, v in row.items()}
        with open(item / "ei-metadata.json", "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "action": "add", "metadata": metadata}, fh, indent=2)
        print(
            f"{study_id}: internal ID {internal_id}, {copied} file(s) copied"
            + (f", missing: {', '.join(missing)}" if missing else "")
        )
        report[study_id] = missing
    known = {r["internal_id"] for r in rows}
    for folder in sorted(p.name for p in lake.iterdir() if p.is_dir()):
        if folder not in known:
            print(f"warning: data lake folder {folder} is not in the master sheet")
    studies = {r["study_id"] for r in rows}
    for f in sorted(portal.glob("*_*.csv")):
        prefix = next((s for s in studies if f.name.startswith(s + "_")), None)
        if prefix is None:
            print(f"warning: portal file {f.name} matches no study ID in the master sheet")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-directory", required=True)
    parser.add_argument("--lake-dir", required=True)
    parser.add_argument("--portal-dir", required=True)
    parser.add_argument("--master-sheet", required=True)
    args, _ = parser.parse_known_args(argv)
    lake, portal, sheet = Path(args.lake_dir), Path(args.portal_dir), Path(args.master_sheet)
    for what, path, ok in (
        ("data lake", lake, lake.is_dir()),
        ("portal", portal, portal.is_dir()),
        ("master sheet", sheet, sheet.is_file()),
    ):
        if not ok:
            print(f"error: {what} not found: {path}", file=sys.stderr)
            return 1
    try:
        report = sort_study(lake, portal, sheet, Path(args.out_directory))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    incomplete = sum(1 for m in report.values() if m)
    print(f"sorted {len(report)} item(s); {incomplete} with missing files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
