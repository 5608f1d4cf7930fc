"""Choosing the store: ``db_url`` (FERCOMP_DB_URL) takes PostgreSQL URLs only, its password
never shows (repr, validation errors, the backend's repr), and ``build_store`` picks the
backend it names."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings
from service.store import SqliteBackend, build_store
from service.store.postgres import CONNECT_DEFAULTS, PostgresBackend, conninfo
from service.store.urls import redact_url

SECRET = "hunter2-s3cret"


def test_db_url_from_the_environment_is_secret(
    monkeypatch: pytest.MonkeyPatch, model_repo: Path
) -> None:
    monkeypatch.setenv("FERCOMP_DB_URL", f"postgresql://fer:{SECRET}@db:5432/fercomp")
    s = Settings(models_dir=model_repo)
    assert s.db_url is not None and SECRET in s.db_url.get_secret_value()
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
    store = build_store(s)
    assert isinstance(store.backend, PostgresBackend)
    assert SECRET not in repr(store.backend) and "fer:***@db:5432" in repr(store.backend)


@pytest.mark.parametrize(
    "bad",
    [
        f"mysql://root:{SECRET}@db/fercomp",
        f"sqlite:///{SECRET}.db",
        f"fer:{SECRET}@db/fercomp",
        f"postgresql://fer:{SECRET}@db/fercomp?no_such_parameter=1",
    ],
)
def test_other_urls_are_refused_without_showing_the_password(bad: str, model_repo: Path) -> None:
    with pytest.raises(ValidationError) as e:
        Settings(models_dir=model_repo, db_url=bad)
    assert "db_url" in str(e.value) and SECRET not in str(e.value)


def test_unset_or_empty_db_url_means_the_sqlite_file(model_repo: Path, tmp_path: Path) -> None:
    for value in (None, "", "  "):
        s = Settings(models_dir=model_repo, db_path=tmp_path / "x.sqlite3", db_url=value)
        assert s.db_url is None
        backend = build_store(s).backend
        assert isinstance(backend, SqliteBackend) and backend.path == tmp_path / "x.sqlite3"
    s = Settings(models_dir=model_repo, db_url="postgres://db/fercomp")  # the short scheme too
    assert isinstance(build_store(s).backend, PostgresBackend)


def test_redact_url() -> None:
    assert redact_url(f"postgresql://u:{SECRET}@h:1/d?sslmode=require") == (
        "postgresql://u:***@h:1/d?sslmode=require"
    )
    assert redact_url(f"postgresql://h/d?user=u&password={SECRET}") == (
        "postgresql://h/d?user=u&password=%2A%2A%2A"
    )
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"  # nothing to hide
    assert redact_url("postgresql://[::1") == "<unparsable URL>"


def test_connection_timeouts_are_defaults_the_url_can_override() -> None:
    params = dict(p.split("=", 1) for p in conninfo("postgresql://u@h/d").split())
    assert params["connect_timeout"] == CONNECT_DEFAULTS["connect_timeout"]
    params = dict(p.split("=", 1) for p in conninfo("postgresql://u@h/d?connect_timeout=9").split())
    assert params["connect_timeout"] == "9" and params["host"] == "h"
