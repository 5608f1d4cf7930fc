"""Secrets from files: ``FERCOMP_DB_URL_FILE`` and ``FERCOMP_ADMIN_TOKEN_FILE`` name a file
(a Docker secret, a Kubernetes Secret volume) whose content is the setting, validated as the
plain variable is; a problem is a ValidationError of that field naming the variable and the
path, and the secret shows nowhere (errors, repr)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from cli.main import build_parser
from cli.serve_cmd import settings_from_args
from service.secret_files import MAX_SECRET_FILE_BYTES
from service.settings import Settings

SECRET = "hunter2-s3cret"
URL = f"postgresql://fer:{SECRET}@db:5432/fercomp"


def _secret(tmp_path: Path, content: str | bytes, name: str = "secret") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def test_db_url_and_token_from_files_without_the_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, model_repo: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("FERCOMP_DB_URL_FILE", str(_secret(tmp_path, URL + "\n", "db_url")))
    monkeypatch.setenv("FERCOMP_ADMIN_TOKEN_FILE", str(_secret(tmp_path, f"{SECRET}\r\n", "tok")))
    s = Settings(models_dir=model_repo, host="0.0.0.0")  # exposed: needs the token it read
    assert s.db_url is not None and s.db_url.get_secret_value() == URL
    assert s.admin_token is not None and s.admin_token.get_secret_value() == SECRET
    assert not s.admin_open
    assert SECRET not in repr(s) and SECRET not in str(s) and SECRET not in str(s.model_dump())


def test_setting_both_the_variable_and_its_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, model_repo: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("FERCOMP_DB_URL", URL)
    monkeypatch.setenv("FERCOMP_DB_URL_FILE", str(_secret(tmp_path, URL)))
    with pytest.raises(ValidationError) as e:
        Settings(models_dir=model_repo)
    assert "FERCOMP_DB_URL and FERCOMP_DB_URL_FILE" in str(e.value)
    assert e.value.errors()[0]["loc"] == ("db_url",) and SECRET not in str(e.value)
    # As the postgres image's convention: an empty variable is an unset one.
    monkeypatch.setenv("FERCOMP_DB_URL", "")
    assert Settings(models_dir=model_repo).db_url is not None
    monkeypatch.setenv("FERCOMP_DB_URL", URL)
    monkeypatch.setenv("FERCOMP_DB_URL_FILE", "")
    s = Settings(models_dir=model_repo)
    assert s.db_url is not None and s.db_url.get_secret_value() == URL


def test_the_variable_name_is_case_insensitive_like_the_others(
    monkeypatch: pytest.MonkeyPatch, model_repo: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("fercomp_admin_token", "from-env")
    monkeypatch.setenv("Fercomp_Admin_Token_File", str(_secret(tmp_path, SECRET)))
    with pytest.raises(ValidationError, match="FERCOMP_ADMIN_TOKEN_FILE are set"):
        Settings(models_dir=model_repo)


def test_a_file_that_cannot_be_used_is_an_error_naming_variable_and_path(
    monkeypatch: pytest.MonkeyPatch, model_repo: Path, tmp_path: Path
) -> None:
    cases = {
        tmp_path / "missing": "No such file or directory",
        tmp_path: "Is a directory",
        _secret(tmp_path, b"\xff" + SECRET.encode(), "binary"): "not UTF-8 text",
        _secret(tmp_path, "x" * (MAX_SECRET_FILE_BYTES + 1), "huge"): "larger than",
    }
    if os.geteuid() != 0:  # root reads any file
        unreadable = _secret(tmp_path, SECRET, "unreadable")
        unreadable.chmod(0)
        cases[unreadable] = "Permission denied"
    for path, why in cases.items():
        monkeypatch.setenv("FERCOMP_ADMIN_TOKEN_FILE", str(path))
        with pytest.raises(ValidationError) as e:
            Settings(models_dir=model_repo)
        text = str(e.value)
        assert f"FERCOMP_ADMIN_TOKEN_FILE={path}" in text and why in text, text
        assert e.value.errors()[0]["loc"] == ("admin_token",)
        assert SECRET not in text and "\\xff" not in text


def test_the_file_content_is_validated_as_the_variable_is(
    monkeypatch: pytest.MonkeyPatch, model_repo: Path, tmp_path: Path
) -> None:
    for bad in (f"mysql://root:{SECRET}@db/fercomp", f"postgresql://fer:{SECRET}@db/x?nope=1"):
        monkeypatch.setenv("FERCOMP_DB_URL_FILE", str(_secret(tmp_path, bad + "\n")))
        with pytest.raises(ValidationError) as e:
            Settings(models_dir=model_repo)
        assert "db_url" in str(e.value) and SECRET not in str(e.value)
    # An empty file: no URL (the SQLite file), no token -- as the empty variables.
    empty = _secret(tmp_path, "\n", "empty")
    monkeypatch.setenv("FERCOMP_DB_URL_FILE", str(empty))
    monkeypatch.setenv("FERCOMP_ADMIN_TOKEN_FILE", str(empty))
    s = Settings(models_dir=model_repo)
    assert s.db_url is None and s.admin_token is None
    with pytest.raises(ValidationError, match="FERCOMP_ADMIN_TOKEN"):
        Settings(models_dir=model_repo, host="0.0.0.0")  # exposed without a token


def test_serve_reports_the_problem_in_one_line(
    monkeypatch: pytest.MonkeyPatch, model_repo: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("FERCOMP_DB_URL_FILE", str(tmp_path / "nope"))
    args = build_parser().parse_args(["serve", "--models", str(model_repo)])
    with pytest.raises(ValueError) as e:
        settings_from_args(args)
    assert str(e.value) == (
        f"invalid setting db_url: FERCOMP_DB_URL_FILE={tmp_path / 'nope'}: cannot read the "
        "file (No such file or directory)"
    )
