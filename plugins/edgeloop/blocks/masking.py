"""Mask secret values in whatever the runner logs, the way Airflow masks connection
passwords: each occurrence of a secret is replaced with ``***``.

The secrets of a run are the values of its ``secret`` parameters, ``EI_API_KEY`` and
the HMAC key. A secret is also masked in its JSON-escaped form (as it would appear
inside a printed JSON document). The empty string is not a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

MASK = "***"
HIDDEN_OPTIONS = ("--hmac-key",)  # options whose value is never shown on a command line


class SecretMask:
    """A callable that replaces every secret in a text with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms.add(secret)
                forms.add(json.dumps(secret)[1:-1])
        ordered = sorted(forms, key=len, reverse=True)  # longest first: no partial masks
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self.longest_bytes = max((len(s.encode()) for s in ordered), default=0)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text


def shown_command(command: Sequence[str], mask: SecretMask) -> tuple[str, ...]:
    """`command` as it may be logged: hidden options' values and secrets masked."""
    shown: list[str] = []
    hide_next = False
    for arg in command:
        if hide_next:
            shown.append(MASK if arg else arg)
            hide_next = False
            continue
        name, sep, _ = arg.partition("=")
        if name in HIDDEN_OPTIONS:
            if sep:
                shown.append(f"{name}={MASK}")
            else:
                shown.append(arg)
                hide_next = True
            continue
        shown.append(mask(arg))
    return tuple(shown)
