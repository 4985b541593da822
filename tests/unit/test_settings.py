"""The settings: every variable read in one place, a change of the environment seen."""

from __future__ import annotations

import inspect
import re

from edgeloop import settings


def test_every_variable_the_settings_read_is_in_variables() -> None:
    """``get_settings`` builds once per set of values of ``VARIABLES``: a variable read
    but missing there would never be seen."""
    source = inspect.getsource(settings._settings)
    read = set(re.findall(r'"((?:EDGELOOP|AIRFLOW)_[A-Z_]+)"', source))
    assert read == set(settings.VARIABLES)


def test_a_changed_environment_is_seen(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("EDGELOOP_HOME", str(tmp_path / "a"))
    monkeypatch.delenv("EDGELOOP_CATALOG_URL", raising=False)
    first = settings.get_settings()
    assert first.home == tmp_path / "a"
    assert settings.get_settings() is first  # the same values: built once
    monkeypatch.setenv("EDGELOOP_HOME", str(tmp_path / "b"))
    assert settings.get_settings().catalog_url == f"sqlite:///{tmp_path / 'b' / 'catalog.db'}"
    monkeypatch.setenv("EDGELOOP_CATALOG_URL", "postgresql://x/y")
    assert settings.get_settings().catalog_url == "postgresql://x/y"
    assert settings.get_settings({"EDGELOOP_API_URL": "http://h:1/"}).api_url == "http://h:1"
