"""A synthetic but physiologically plausible activity study (the seed's health
reference design), laid out the way the study's data arrives:

```
OUT/
  data-lake/<INTERNAL_ID>/accelerometer.csv   timestamp,x,y,z        (wearable, g)
  data-lake/<INTERNAL_ID>/ppg.csv             timestamp,ppg          (wearable, ADC counts)
  portal/<STUDY_ID>_polar_h10.csv             timestamp,hr           (reference device, bpm)
  portal/<STUDY_ID>_labels.csv                start,end,label        (research lab)
  master_sheet.csv                            study_id,internal_id,age,sex,height_cm,...
  study.json                                  what was generated (ground truth for tests)
```

Timestamps are integer milliseconds since the Unix epoch. Each subject does a
schedule of sitting / walking / running / biking; the heart rate follows the
activity with a first-order lag; the PPG's pulse is synthesised from that heart
rate (phase integration of a pulse waveform, plus respiration, drift, motion
artefacts and noise); the accelerometer carries gravity plus a step / cadence
oscillation. The wearable and the Polar start and stop a few seconds apart
from the labelled session, so streams need aligning.

With ``broken=True`` and at least four subjects, three are deliberately broken:
AMS_002 has no PPG file, AMS_003's PPG comes from another (unrelated) session,
AMS_004's labels file has a gap.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ACTIVITIES = ("sitting", "walking", "running", "biking")
# activity -> (HR above resting, step/cadence Hz, oscillation amplitude g, noise g)
_PROFILE = {
    "sitting": (0.0, 0.0, 0.0, 0.01),
    "walking": (28.0, 1.8, 0.25, 0.03),
    "running": (78.0, 2.7, 0.7, 0.06),
    "biking": (52.0, 1.3, 0.12, 0.04),
}
_SCHEDULE = (
    "sitting",
    "walking",
    "running",
    "sitting",
    "biking",
    "walking",
    "sitting",
    "running",
    "biking",
    "sitting",
)
BROKEN_KINDS = {2: "missing_ppg", 3: "unrelated_ppg", 4: "labels_gap"}
STUDY_START = dt.datetime(2022, 8, 1, 9, 0, tzinfo=dt.UTC)
_ID_CHARS = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ23456789"))


@dataclass(frozen=True)
class Subject:
    study_id: str
    internal_id: str
    age: int
    sex: str
    height_cm: int
    weight_kg: float
    bmi: float
    dominant_hand: str
    broken: str  # "" when the subject is complete and consistent


@dataclass(frozen=True)
class Study:
    root: Path
    subjects: tuple[Subject, ...]

    @property
    def lake(self) -> Path:
        return self.root / "data-lake"

    @property
    def portal(self) -> Path:
        return self.root / "portal"

    @property
    def master_sheet(self) -> Path:
        return self.root / "master_sheet.csv"


def _write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.table(columns)
    with open(path, "wb") as fh:  # a plain header line; pyarrow would quote the names
        fh.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def _schedule(rng: np.random.Generator, duration_s: float) -> list[tuple[float, float, str]]:
    """Contiguous (start s, end s, activity) segments covering [0, duration_s]."""
    segments: list[tuple[float, float, str]] = []
    t = 0.0
    i = int(rng.integers(0, 3)) * 3 % len(_SCHEDULE)  # start at a sitting phase
    while t < duration_s:
        length = max(20.0, duration_s * rng.uniform(0.08, 0.16))
        end = min(duration_s, t + length)
        if duration_s - end < 15.0:
            end = duration_s
        activity = _SCHEDULE[i % len(_SCHEDULE)]
        if segments and segments[-1][2] == activity:
            segments[-1] = (segments[-1][0], end, activity)
        else:
            segments.append((t, end, activity))
        t, i = end, i + 1
    return segments


def _heart_rate(
    rng: np.random.Generator,
    segments: list[tuple[float, float, str]],
    t: np.ndarray,
    resting: float,
) -> np.ndarray:
    """HR (bpm) at 1 Hz times `t` (s): lagged response to the activity plus slow noise."""
    ends = np.array([s[1] for s in segments])
    idx = np.minimum(np.searchsorted(ends, t, side="right"), len(segments) - 1)
    target = resting + np.array([_PROFILE[segments[i][2]][0] for i in idx])
    hr = np.empty_like(target)
    hr[0] = target[0]
    rise, fall = 1 - np.exp(-1 / 20.0), 1 - np.exp(-1 / 35.0)
    noise = np.zeros_like(target)
    for k in range(1, len(t)):
        gain = rise if target[k] > hr[k - 1] else fall
        hr[k] = hr[k - 1] + (target[k] - hr[k - 1]) * gain
        noise[k] = 0.97 * noise[k - 1] + rng.normal(0, 0.5)
    return hr + noise


def _ppg(
    rng: np.random.Generator,
    t_s: np.ndarray,
    hr_t: np.ndarray,
    hr: np.ndarray,
    motion: np.ndarray,
    fs: float,
) -> np.ndarray:
    """PPG samples at times `t_s` whose pulse follows `hr` (given at `hr_t`)."""
    hr_at = np.interp(t_s, hr_t, hr)
    phase = 2 * np.pi * np.cumsum(hr_at / 60.0) / fs + rng.uniform(0, 2 * np.pi)
    pulse = np.sin(phase) + 0.15 * np.sin(2 * phase - 0.9)
    resp = 0.2 * np.sin(2 * np.pi * 0.25 * t_s + rng.uniform(0, 6))
    drift = np.cumsum(rng.normal(0, 0.003, t_s.size))
    signal = pulse + resp + drift + motion + rng.normal(0, 0.05, t_s.size)
    return np.round(2048 + 300 * signal).astype(np.int64)


def _subject(index: int, rng: np.random.Generator, used: set[str]) -> Subject:
    while True:
        internal = "".join(rng.choice(_ID_CHARS, 6))
        if internal not in used:
            used.add(internal)
            break
    age = int(rng.integers(21, 64))
    sex = str(rng.choice(["F", "M"]))
    height = int(rng.normal(178 if sex == "M" else 166, 7))
    bmi = float(np.clip(rng.normal(24.0, 3.0), 18.0, 35.0))
    weight = round(bmi * (height / 100) ** 2, 1)
    return Subject(
        study_id=f"AMS_{index:03d}",
        internal_id=internal,
        age=age,
        sex=sex,
        height_cm=height,
        weight_kg=weight,
        bmi=round(weight / (height / 100) ** 2, 1),
        dominant_hand=str(rng.choice(["right", "right", "right", "left"])),
        broken="",
    )


def _other_session_hr(
    seed: int, index: int, duration_s: float, hr_t: np.ndarray, hr: np.ndarray, resting: float
) -> np.ndarray:
    """HR of an unrelated session (another schedule), |correlation| with `hr` below 0.3."""
    for attempt in range(100):
        rng = np.random.default_rng([seed, index, 7919, attempt])
        other = _heart_rate(rng, _schedule(rng, duration_s), hr_t, resting)
        if abs(np.corrcoef(other, hr)[0, 1]) < 0.3:
            return other
    return np.full_like(hr, resting)  # pragma: no cover - 100 correlated draws in a row


def generate_health_study(
    out_dir: str | Path,
    subjects: int = 10,
    *,
    minutes: float = 90.0,
    accel_hz: float = 50.0,
    ppg_hz: float = 25.0,
    seed: int = 2022,
    broken: bool = True,
) -> Study:
    """Write the study under `out_dir` and return what was written."""
    if subjects < 1:
        raise ValueError(f"subjects must be at least 1, got {subjects}")
    root = Path(out_dir)
    lake, portal = root / "data-lake", root / "portal"
    lake.mkdir(parents=True, exist_ok=True)
    portal.mkdir(parents=True, exist_ok=True)
    duration_s = minutes * 60.0
    used: set[str] = set()
    people: list[Subject] = []
    for index in range(1, subjects + 1):
        rng = np.random.default_rng([seed, index])
        person = _subject(index, rng, used)
        kind = BROKEN_KINDS.get(index, "") if broken and subjects >= 4 else ""
        person = Subject(**{**asdict(person), "broken": kind})
        people.append(person)
        start_ms = int((STUDY_START + dt.timedelta(days=index - 1)).timestamp() * 1000)

        segments = _schedule(rng, duration_s)
        resting = float(rng.uniform(58, 76))
        # the wearable runs from a little before to a little after the session, the Polar too
        wear_from, wear_to = -rng.uniform(2, 6), duration_s + rng.uniform(2, 6)
        polar_from, polar_to = -rng.uniform(1, 4), duration_s + rng.uniform(1, 4)
        hr_t = np.arange(np.floor(min(wear_from, polar_from)) - 1, np.ceil(wear_to) + 2, 1.0)
        hr = _heart_rate(rng, segments, hr_t, resting)

        # reference heart rate: Polar H10, one value per second
        pt = np.arange(polar_from, polar_to, 1.0)
        _write_csv(
            portal / f"{person.study_id}_polar_h10.csv",
            {
                "timestamp": start_ms + np.round(pt * 1000).astype(np.int64),
                "hr": np.round(np.interp(pt, hr_t, hr)).astype(np.int64),
            },
        )

        # labels: contiguous segments covering the session
        starts = np.array([s[0] for s in segments])
        ends = np.array([s[1] for s in segments])
        if kind == "labels_gap" and len(segments) > 2:
            k = len(segments) // 2
            ends[k] -= min(60.0, (ends[k] - starts[k]) / 2)
        _write_csv(
            portal / f"{person.study_id}_labels.csv",
            {
                "start": start_ms + np.round(starts * 1000).astype(np.int64),
                "end": start_ms + np.round(ends * 1000).astype(np.int64),
                "label": np.array([s[2] for s in segments]),
            },
        )

        # accelerometer: gravity + activity oscillation + noise, in g
        n_acc = int((wear_to - wear_from) * accel_hz)
        at = wear_from + np.arange(n_acc) / accel_hz
        seg_idx = np.minimum(np.searchsorted(ends, at, side="right"), len(segments) - 1)
        prof = np.array([_PROFILE[segments[i][2]] for i in range(len(segments))])
        step_hz, amp, noise = prof[seg_idx, 1], prof[seg_idx, 2], prof[seg_idx, 3]
        gravity = np.array([0.15, -0.25, 0.95])
        gravity = gravity / np.linalg.norm(gravity)
        osc = amp * np.sin(2 * np.pi * np.cumsum(step_hz) / accel_hz)
        acc = {}
        for axis, (g, w) in zip("xyz", zip(gravity, (0.6, 1.0, 0.4), strict=True), strict=True):
            acc[axis] = np.round(g + w * osc + rng.normal(0, 1, n_acc) * noise, 4)
        lake_dir = lake / person.internal_id
        lake_dir.mkdir(exist_ok=True)
        _write_csv(
            lake_dir / "accelerometer.csv",
            {
                "timestamp": start_ms + np.round(at * 1000).astype(np.int64),
                **acc,
            },
        )

        # PPG from the wearable (or from someone else's session, or missing)
        if kind != "missing_ppg":
            n_ppg = int((wear_to - wear_from) * ppg_hz)
            ppg_t = wear_from + np.arange(n_ppg) / ppg_hz
            source_hr = (
                _other_session_hr(seed, index, duration_s, hr_t, hr, resting)
                if kind == "unrelated_ppg"
                else hr
            )
            motion = 0.3 * np.interp(ppg_t, at, osc)
            _write_csv(
                lake_dir / "ppg.csv",
                {
                    "timestamp": start_ms + np.round(ppg_t * 1000).astype(np.int64),
                    "ppg": _ppg(rng, ppg_t, hr_t, source_hr, motion, ppg_hz),
                },
            )
        log.info(
            "generated %s (%s): %.0f min, %d segments%s",
            person.study_id,
            person.internal_id,
            minutes,
            len(segments),
            f", broken: {kind}" if kind else "",
        )

    _write_csv(
        root / "master_sheet.csv",
        {
            "study_id": [p.study_id for p in people],
            "internal_id": [p.internal_id for p in people],
            "age": [p.age for p in people],
            "sex": [p.sex for p in people],
            "height_cm": [p.height_cm for p in people],
            "weight_kg": [p.weight_kg for p in people],
            "bmi": [p.bmi for p in people],
            "dominant_hand": [p.dominant_hand for p in people],
        },
    )
    (root / "study.json").write_text(
        json.dumps(
            {
                "name": "AMS Activity Study (synthetic)",
                "minutes": minutes,
                "accel_hz": accel_hz,
                "ppg_hz": ppg_hz,
                "seed": seed,
                "subjects": [asdict(p) for p in people],
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return Study(root, tuple(people))
