"""A pipeline's schedule: ``intervalStr`` ("15m", "2h", "1d") or ``schedule`` (cron / preset).

An interval becomes a cron expression whenever one says exactly the same thing
("15m" → ``*/15 * * * *``, "1d" → ``0 0 * * *``), so the UI shows a readable
schedule ("At 00:00") instead of ``1 day, 0:00:00``; other intervals stay a
``timedelta`` (Airflow's DeltaTriggerTimetable).
"""

from __future__ import annotations

import re
from datetime import timedelta

from edgeloop.errors import ConfigError

# Airflow's presets (airflow.sdk.definitions.timetables._cron.CRON_PRESETS, plus
# @once and @continuous); any other "@..." is refused, never passed on.
PRESETS = (
    "@once",
    "@continuous",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
)
DEFAULT = "@daily"
_INTERVAL = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
# the longest interval of each unit: one year (beyond it timedelta overflows soon)
_MAX = {"m": 366 * 24 * 60, "h": 366 * 24, "d": 366}


def interval_schedule(interval: str, *, file: str | None = None) -> str | timedelta:
    m = _INTERVAL.match(interval)
    if not m:
        raise ConfigError(
            "invalid interval",
            file=file,
            path="$.intervalStr",
            expected='"<n>m", "<n>h" or "<n>d"',
            value=interval,
        )
    n, unit = int(m.group(1)), m.group(2)
    if n > _MAX[unit]:
        raise ConfigError(
            "interval too long",
            file=file,
            path="$.intervalStr",
            expected=f"at most one year ({_MAX[unit]}{unit})",
            value=interval,
        )
    if unit == "m" and n < 60 and 60 % n == 0:
        return "* * * * *" if n == 1 else f"*/{n} * * * *"
    if (unit == "m" and n == 60) or (unit == "h" and n == 1):
        return "0 * * * *"
    if unit == "h" and n < 24 and 24 % n == 0:
        return f"0 */{n} * * *"
    if (unit == "h" and n == 24) or (unit == "d" and n == 1):
        return "0 0 * * *"
    return timedelta(**{_UNITS[unit]: n})


def parse_schedule(doc: dict, *, file: str | None = None) -> str | timedelta | None:
    """The schedule of a pipeline object (``doc``); a bare list of steps runs daily."""
    has_schedule, interval = "schedule" in doc, doc.get("intervalStr")
    if has_schedule and interval is not None:
        raise ConfigError(
            "give either 'schedule' or 'intervalStr', not both",
            file=file,
            path="$.schedule",
            expected="one of the two",
            value=doc["schedule"],
        )
    if interval is not None:
        return interval_schedule(interval, file=file)
    if not has_schedule:
        return DEFAULT
    schedule = doc["schedule"]
    if schedule is None:
        return None  # triggered by hand or through the API only
    if schedule.startswith("@"):
        if schedule not in PRESETS:
            raise ConfigError(
                "unknown schedule preset",
                file=file,
                path="$.schedule",
                expected=f"one of {list(PRESETS)} or a cron expression",
                value=schedule,
            )
        return schedule
    from croniter import croniter

    if len(schedule.split()) != 5 or not croniter.is_valid(schedule):
        raise ConfigError(
            "invalid schedule",
            file=file,
            path="$.schedule",
            expected="a cron expression of 5 fields or a preset like @daily",
            value=schedule,
        )
    return schedule
