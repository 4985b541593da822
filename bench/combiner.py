"""Benchmark: the research-combiner against plain CSV -> Parquet I/O on the same files.

Ten subjects of two hours (accelerometer 50 Hz, PPG 25 Hz, Polar 1 Hz, labels),
generated, sorted by the research-sorter block, then, in the same process and run:

- raw I/O: read each item's four CSVs with pyarrow.csv and write each as Parquet;
- combiner: research-combiner's combine_item on each item (read the CSVs with
  pyarrow, derive HR from PPG, correlate, align on one time base, label every
  row, write combined.parquet and hr.png).

Both are warmed up on one item first (imports, page cache), then timed over all
ten, item by item alternating, in three rounds; the best round of each counts.
With --runner the block is also run once per item through `run_block` (a
process per item, imports included) and that total is printed for information.

The last line is `combiner_vs_raw_io=R` (target R <= 2.0).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMBINER = REPO / "include" / "blocks" / "research-combiner"
SORTER = REPO / "include" / "blocks" / "research-sorter"
FILES = ("accelerometer", "ppg", "polar_h10", "labels")


def load_combiner():
    spec = importlib.util.spec_from_file_location("research_combine", COMBINER / "combine.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {COMBINER / 'combine.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def raw_io(item: Path, out: Path) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        table = pacsv.read_csv(item / f"{name}.csv")
        pq.write_table(table, out / f"{name}.parquet")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--runner",
        action="store_true",
        help="also time the block through run_block (one process per item)",
    )
    parser.add_argument("--workdir", help="keep data here instead of a temporary folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from edgeloop.blocks.runner import run_block
    from edgeloop.research.sample_data import generate_health_study

    with tempfile.TemporaryDirectory(prefix="bench-combiner-") as tmp:
        work = Path(args.workdir or tmp)
        started = time.perf_counter()
        study = generate_health_study(
            work / "study",
            args.subjects,
            minutes=args.minutes,
            accel_hz=50.0,
            ppg_hz=25.0,
            broken=False,
        )
        print(
            f"generated {args.subjects} subjects x {args.minutes:g} min "
            f"(accelerometer 50 Hz, PPG 25 Hz) in {time.perf_counter() - started:.1f} s"
        )
        sorted_dir = work / "sorted"
        result = run_block(
            SORTER,
            out_directory=sorted_dir,
            params={
                "lake-dir": str(study.lake),
                "portal-dir": str(study.portal),
                "master-sheet": str(study.master_sheet),
            },
        )
        items = [sorted_dir / s for s in sorted(result.item_metadata)]
        metas = {s: result.item_metadata[s] for s in result.item_metadata}
        csv_bytes = sum((i / f"{n}.csv").stat().st_size for i in items for n in FILES)
        print(f"{len(items)} items, {csv_bytes / 1e6:.0f} MB of CSV")

        combine = load_combiner()
        warm = time.perf_counter()
        combine.combine_item(items[0], _fresh(work / "warm" / "c"), metas[items[0].name])
        raw_io(items[0], work / "warm" / "r")
        print(f"warm-up (imports + one item each): {time.perf_counter() - warm:.2f} s")

        best_raw = best_comb = float("inf")
        for r in range(args.rounds):
            # interleaved item by item, so a change in machine load hits both sides alike
            raw_s = comb_s = 0.0
            passed = 0
            for item in items:
                t = time.perf_counter()
                raw_io(item, work / "raw" / item.name)
                raw_s += time.perf_counter() - t
                t = time.perf_counter()
                res = combine.combine_item(
                    item, _fresh(work / "combined" / item.name), metas[item.name]
                )
                comb_s += time.perf_counter() - t
                passed += res.passed
            print(
                f"round {r + 1}: raw_io={raw_s:.2f} s  combiner={comb_s:.2f} s  "
                f"({passed}/{len(items)} items passed, wrote combined.parquet + hr.png)"
            )
            best_raw, best_comb = min(best_raw, raw_s), min(best_comb, comb_s)

        if args.runner:
            t = time.perf_counter()
            for item in items:
                run_block(
                    COMBINER,
                    in_directory=item,
                    out_directory=work / "run" / item.name,
                    metadata=metas[item.name],
                )
            print(
                f"combiner_via_runner_s={time.perf_counter() - t:.2f} "
                "(one process per item: venv python start, imports, block)"
            )
        print(
            f"raw_io_s={best_raw:.2f} (pyarrow.csv read + Parquet write of 4 files x "
            f"{len(items)} items)"
        )
        print(
            f"combiner_s={best_comb:.2f} (read, HR from PPG, correlation, alignment, "
            f"labels, combined.parquet + hr.png x {len(items)} items)"
        )
        print(f"combiner_vs_raw_io={best_comb / best_raw:.2f}")
    return 0


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
