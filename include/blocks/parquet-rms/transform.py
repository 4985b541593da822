"""parquet-rms: RMS of the accelerometer axes per label from a Parquet file.

The transformation-block tutorial of the seed: load the Parquet file given as
--in-file, group rows by label, compute sqrt(mean(v^2)) of each axis, and write
OUT/<name>_rms.parquet with columns label, rms_<axis>..., samples.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def rms_per_label(frame: pd.DataFrame, axes: list[str], label_column: str) -> pd.DataFrame:
    values = frame[axes].astype("float64")
    squared = values.pow(2)
    squared[label_column] = frame[label_column].astype("string")
    grouped = squared.groupby(label_column, sort=True)
    out = np.sqrt(grouped[axes].mean()).rename(columns={a: f"rms_{a}" for a in axes})
    out["samples"] = grouped.size().astype("int64")
    return out.reset_index().rename(columns={label_column: "label"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Organization transformation block")
    parser.add_argument("--in-file", type=str, required=True)
    parser.add_argument("--out-directory", type=str, required=True)
    parser.add_argument("--axes", type=str, default="accX,accY,accZ")
    parser.add_argument("--label-column", type=str, default="label")
    args, _ = parser.parse_known_args(argv)

    if not os.path.exists(args.in_file):
        print("--in-file argument", args.in_file, "does not exist", file=sys.stderr)
        return 1
    axes = [a.strip() for a in args.axes.split(",") if a.strip()]
    schema = pq.read_schema(args.in_file)
    missing = [c for c in [*axes, args.label_column] if c not in schema.names]
    if missing:
        print(f"{args.in_file}: missing column(s) {missing}; has {schema.names}", file=sys.stderr)
        return 1
    frame = pq.read_table(args.in_file, columns=[*axes, args.label_column]).to_pandas()
    result = rms_per_label(frame, axes, args.label_column)
    os.makedirs(args.out_directory, exist_ok=True)
    name = os.path.splitext(os.path.basename(args.in_file))[0] + "_rms.parquet"
    table = pa.Table.from_pandas(result, preserve_index=False)
    pq.write_table(table, os.path.join(args.out_directory, name))
    for row in result.itertuples(index=False):
        print(
            " ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in row._asdict().items()
            )
        )
    print(f"wrote {name}: {len(result)} label(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
