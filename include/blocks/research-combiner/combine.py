"""research-combiner: one data item (accelerometer, PPG, Polar H10, labels) -> checklist,
combined.parquet (the research-combined contract) and hr.png.

Steps: read the four CSVs with pyarrow; derive the heart rate from the PPG
(band-pass, peak detection, beat-to-beat intervals, median filter); correlate
it with the Polar H10 reference on a 1 Hz grid; align everything on the
accelerometer's clock inside the span every stream covers; give every row the
label whose [start, end) interval covers it.

Checklist (ei-metadata.json, action "add"): ei_check_<file>_file_present for
the four files, ei_check_hr_correlation_min (Pearson r of PPG HR vs reference
HR >= --min-correlation), ei_check_labels_cover_recording (no row without a
label), and ei_check (every ei_check_* key of the item, including those an
earlier checklist block set, is 1). A check whose inputs are missing is not
written: the missing file's own check already fails. combined.parquet is
written only when this block's checks all pass; hr.png whenever both heart
rates exist (it is how a failed correlation is diagnosed).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CONTRACT = "research-combined/1"
FILES = ("accelerometer", "ppg", "polar_h10", "labels")
COLUMN_TYPES = {
    "accelerometer": {
        "timestamp": pa.int64(),
        "x": pa.float32(),
        "y": pa.float32(),
        "z": pa.float32(),
    },
    "ppg": {"timestamp": pa.int64(), "ppg": pa.float64()},
    "polar_h10": {"timestamp": pa.int64(), "hr": pa.float64()},
    "labels": {"start": pa.int64(), "end": pa.int64(), "label": pa.string()},
}
SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("accX", pa.float32(), nullable=False),
        pa.field("accY", pa.float32(), nullable=False),
        pa.field("accZ", pa.float32(), nullable=False),
        pa.field("ppg", pa.float32(), nullable=False),
        pa.field("hr_ppg", pa.float32(), nullable=True),
        pa.field("hr_ref", pa.float32(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
    ]
)
MIN_BPM, MAX_BPM = 35.0, 220.0
MAX_BEAT_GAP_S = 5.0


@dataclass
class CombineResult:
    checks: dict[str, bool] = field(default_factory=dict)
    correlation: float = math.nan
    rows: int = 0
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


def read_csv(path: Path, kind: str) -> dict[str, Any]:
    """Read one of the four files with pyarrow, with the columns typed as expected.

    Timestamps and the values computed on become numpy arrays; the accelerometer
    axes stay Arrow (float32) and go into the combined table without a copy.
    """
    types = COLUMN_TYPES[kind]
    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types)),
    )
    if table.num_rows == 0:
        raise ValueError(f"{path.name}: no rows")
    for name in types:
        nulls = table.column(name).null_count
        if nulls:
            raise ValueError(f"{path.name}: column {name!r} has {nulls} empty value(s)")
    # the checklist flags out-of-order timestamps; the combiner still aligns correctly
    key = table.column("start" if kind == "labels" else "timestamp").to_numpy()
    if key.size > 1 and not bool(np.all(key[1:] >= key[:-1])):
        table = table.take(pa.array(np.argsort(key, kind="stable")))
    out: dict[str, Any] = {}
    for name in types:
        col = table.column(name)
        if name == "label":
            out[name] = np.asarray(col.to_pylist(), dtype=object)
        elif kind == "accelerometer" and name != "timestamp":
            out[name] = col
        else:
            out[name] = col.to_numpy()
    return out


def heart_rate_from_ppg(t_ms: np.ndarray, ppg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beat times (ms, midpoints of beat-to-beat intervals) and heart rate (bpm) there."""
    from scipy.signal import butter, find_peaks, medfilt, sosfiltfilt

    if t_ms.size < 50:
        return np.empty(0), np.empty(0)
    fs = 1000.0 / float(np.median(np.diff(t_ms)))
    sos = butter(2, [0.5, min(4.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    filtered = sosfiltfilt(sos, ppg - ppg.mean())
    min_distance = max(1, int(fs * 60.0 / MAX_BPM))
    peaks, _ = find_peaks(filtered, distance=min_distance, prominence=0.3 * filtered.std())
    if peaks.size < 3:
        return np.empty(0), np.empty(0)
    # refine each peak to sub-sample precision (parabola through the peak and its
    # neighbours): at 25 Hz a whole-sample peak time is off by up to 20 ms per beat
    peaks = peaks[(peaks > 0) & (peaks < filtered.size - 1)]
    y0, y1, y2 = filtered[peaks - 1], filtered[peaks], filtered[peaks + 1]
    denom = y0 - 2 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(denom != 0, 0.5 * (y0 - y2) / denom, 0.0)
    beat_t = t_ms[peaks].astype(np.float64) + np.clip(offset, -0.5, 0.5) * (1000.0 / fs)
    ibi = np.diff(beat_t) / 1000.0
    mid = (beat_t[1:] + beat_t[:-1]) / 2.0
    bpm = 60.0 / ibi
    keep = (bpm >= MIN_BPM) & (bpm <= MAX_BPM)
    mid, bpm = mid[keep], bpm[keep]
    if bpm.size >= 5:
        bpm = medfilt(bpm, 5)
    return mid, bpm


def interp_with_gaps(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, max_gap: float) -> np.ndarray:
    """np.interp, but NaN where the nearest sample of `xp` is farther than `max_gap`."""
    if xp.size == 0:
        return np.full(x.shape, np.nan)
    y = np.interp(x, xp, fp)
    i = np.searchsorted(xp, x)
    left = xp[np.clip(i - 1, 0, xp.size - 1)]
    right = xp[np.clip(i, 0, xp.size - 1)]
    nearest = np.minimum(np.abs(x - left), np.abs(right - x))
    y[nearest > max_gap] = np.nan
    return y


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10:
        return math.nan
    a, b = a[ok], b[ok]
    if a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def render_hr_png(
    grid_s: np.ndarray, hr_ref: np.ndarray, hr_ppg: np.ndarray, correlation: float, title: str
) -> bytes:
    """hr.png: both heart rates over time, and their correlation in the title."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    step = max(1, grid_s.size // 1500)  # at most ~1500 points per line: a readable plot
    n = grid_s.size // step * step
    if n == 0:
        n, step = grid_s.size, 1

    def thin(v: np.ndarray) -> np.ndarray:
        return np.nanmean(v[:n].reshape(-1, step), axis=1) if step > 1 else v[:n]

    fig = Figure(figsize=(8, 3), dpi=72)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.88)
    ax = fig.add_subplot(1, 1, 1)
    minutes = thin((grid_s - grid_s[0]) / 60.0)
    ax.plot(minutes, thin(hr_ref), lw=1.0, label="reference (Polar H10)")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins where no beat was found
        ax.plot(minutes, thin(hr_ppg), lw=1.0, label="from PPG")
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("minutes")
    ax.set_ylabel("heart rate (bpm)")
    ax.set_title(
        f"{title}  r = {correlation:.3f}" if math.isfinite(correlation) else f"{title}  r = n/a"
    )
    ax.legend(loc="upper right", fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def combine_item(
    in_dir: Path,
    out_dir: Path,
    metadata: dict[str, str],
    *,
    min_correlation: float = 0.5,
    plot_on_failure: bool = True,
) -> CombineResult:
    """Combine one item; writes outputs to `out_dir` and returns the checklist."""
    res = CombineResult()
    data: dict[str, dict[str, np.ndarray]] = {}
    present = {kind: (in_dir / f"{kind}.csv").is_file() for kind in FILES}
    for kind in FILES:
        res.checks[f"ei_check_{kind}_file_present"] = present[kind]
    # pyarrow parses with the GIL released: read all four files in the background and
    # work on the small ones (PPG, Polar) while the accelerometer is still being parsed
    pool = ThreadPoolExecutor(max_workers=len(FILES))
    try:
        futures = {
            kind: pool.submit(read_csv, in_dir / f"{kind}.csv", kind)
            for kind in FILES
            if present[kind]
        }

        def have(kind: str) -> bool:
            if kind not in data and kind in futures:
                try:
                    data[kind] = futures.pop(kind).result()
                except (pa.ArrowInvalid, ValueError, KeyError) as exc:
                    res.checks[f"ei_check_{kind}_file_present"] = False
                    res.notes.append(f"{kind}.csv: unreadable: {exc}")
            return kind in data

        png: bytes | None = None
        grid_ms = hr_ppg_grid = None
        if have("ppg") and have("polar_h10"):
            ppg, polar = data["ppg"], data["polar_h10"]
            beat_t, beat_bpm = heart_rate_from_ppg(ppg["timestamp"], ppg["ppg"])
            lo = max(ppg["timestamp"][0], polar["timestamp"][0])
            hi = min(ppg["timestamp"][-1], polar["timestamp"][-1])
            grid_ms = np.arange(lo, hi, 1000.0)
            hr_ref_grid = np.interp(grid_ms, polar["timestamp"], polar["hr"])
            hr_ppg_grid = interp_with_gaps(grid_ms, beat_t, beat_bpm, MAX_BEAT_GAP_S * 1000)
            res.correlation = pearson(hr_ppg_grid, hr_ref_grid)
            res.checks["ei_check_hr_correlation_min"] = (
                math.isfinite(res.correlation) and res.correlation >= min_correlation
            )
            if grid_ms.size >= 2:
                title = metadata.get("study_id") or in_dir.name
                png = render_hr_png(
                    grid_ms / 1000.0, hr_ref_grid, hr_ppg_grid, res.correlation, title
                )

        table = None
        if have("accelerometer") and have("labels") and grid_ms is not None:
            table = align(data, grid_ms, hr_ppg_grid, res)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    if res.passed and table is not None:
        item_meta = {k: v for k, v in metadata.items() if k != "dataItemInfo"}
        table = table.replace_schema_metadata(
            {
                "edgeloop.contract": CONTRACT,
                "edgeloop.item_metadata": json.dumps(item_meta, sort_keys=True),
                "edgeloop.hr_correlation": f"{res.correlation:.4f}",
            }
        )
        write_parquet(table, out_dir / "combined.parquet")
        res.outputs.append("combined.parquet")
    if png is not None and (res.passed or plot_on_failure):
        (out_dir / "hr.png").write_bytes(png)
        res.outputs.append("hr.png")
    return res


def align(
    data: dict[str, dict[str, np.ndarray]],
    grid_ms: np.ndarray,
    hr_ppg_grid: np.ndarray,
    res: CombineResult,
) -> pa.Table | None:
    """One row per accelerometer sample in the span every stream covers, labelled.

    Sets the ei_check_labels_cover_recording check; returns None when it fails.
    """
    acc, labels, ppg, polar = (data[k] for k in ("accelerometer", "labels", "ppg", "polar_h10"))
    t = acc["timestamp"]
    lo = max(t[0], ppg["timestamp"][0], polar["timestamp"][0], labels["start"].min())
    hi = min(t[-1], ppg["timestamp"][-1], polar["timestamp"][-1], labels["end"].max())
    first, stop = int(np.searchsorted(t, lo, "left")), int(np.searchsorted(t, hi, "right"))
    t = t[first:stop]
    order = np.argsort(labels["start"], kind="stable")
    starts, ends = labels["start"][order], labels["end"][order]
    idx = np.searchsorted(starts, t, side="right") - 1
    covered = (idx >= 0) & (t < ends[np.clip(idx, 0, None)])
    ok = bool(t.size) and bool(covered.all())
    res.checks["ei_check_labels_cover_recording"] = ok
    res.rows = int(t.size)
    if not ok:
        res.notes.append(f"{int((~covered).sum())} of {t.size} samples have no label")
        return None
    # hr_ppg: from the 1 Hz grid (NaN where no beat was near) -> null in the table
    if grid_ms.size:
        hr_ppg = np.interp(t, grid_ms, hr_ppg_grid).astype(np.float32)
    else:  # PPG and Polar do not overlap: no PPG heart rate anywhere
        hr_ppg = np.full(t.shape, np.nan, dtype=np.float32)
    names = pa.array(list(labels["label"][order]), type=pa.string())
    return pa.table(
        [
            pa.array(t, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            acc["x"].slice(first, stop - first),
            acc["y"].slice(first, stop - first),
            acc["z"].slice(first, stop - first),
            pa.array(np.interp(t, ppg["timestamp"], ppg["ppg"]).astype(np.float32)),
            pa.array(hr_ppg, mask=np.isnan(hr_ppg)),
            pa.array(np.interp(t, polar["timestamp"], polar["hr"]).astype(np.float32)),
            names.take(pa.array(idx, type=pa.int32())),
        ],
        schema=SCHEMA,
    )


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write to a temporary name, then move into place: never a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    # dictionary pages only where values repeat (quantised sensor axes, labels): the
    # interpolated columns are all distinct and would only pay for a failed dictionary
    pq.write_table(
        table, tmp, compression="snappy", use_dictionary=["accX", "accY", "accZ", "label"]
    )
    tmp.replace(path)


def item_checklist(res: CombineResult, incoming: dict[str, str]) -> dict[str, str]:
    """The metadata this block adds: its checks, ei_check over all checks, the correlation."""
    meta = {k: "1" if ok else "0" for k, ok in res.checks.items()}
    others = {k: v for k, v in incoming.items() if k.startswith("ei_check_") and k not in meta}
    meta["ei_check"] = "1" if res.passed and all(v == "1" for v in others.values()) else "0"
    if math.isfinite(res.correlation):
        meta["hr_correlation"] = f"{res.correlation:.4f}"
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-directory", required=True)
    parser.add_argument("--out-directory", required=True)
    parser.add_argument("--metadata", default="{}")
    parser.add_argument("--min-correlation", type=float, default=0.5)
    parser.add_argument("--plot-on-failure", default="1")
    args, _ = parser.parse_known_args(argv)
    started = time.perf_counter()
    metadata = json.loads(args.metadata) if args.metadata else {}
    incoming = {k: str(v) for k, v in metadata.items() if k != "dataItemInfo"}
    in_dir, out_dir = Path(args.in_directory), Path(args.out_directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = combine_item(
        in_dir,
        out_dir,
        incoming,
        min_correlation=args.min_correlation,
        plot_on_failure=args.plot_on_failure.lower() in ("1", "true", "yes"),
    )
    for key, ok in res.checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {key}")
    for note in res.notes:
        print(f"note: {note}")
    if math.isfinite(res.correlation):
        print(f"correlation PPG HR vs reference HR: {res.correlation:.3f}")
    meta = item_checklist(res, incoming)
    with open(out_dir / "ei-metadata.json", "w", encoding="utf-8") as fh:
        json.dump({"version": 1, "action": "add", "metadata": meta}, fh, indent=2)
    print(
        f"{in_dir.name}: {res.rows} rows, outputs {res.outputs or 'none'}, "
        f"ei_check={meta['ei_check']} ({time.perf_counter() - started:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
