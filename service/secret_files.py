"""``FERCOMP_<FIELD>_FILE``: a secret setting read from the file a variable names.

The convention of the official postgres image (POSTGRES_PASSWORD_FILE, which fercomp-postgres
follows too) and many others: ``FERCOMP_DB_URL_FILE=/run/secrets/db_url`` makes the file's
content the value of ``db_url``. It works unchanged with Docker secrets (mounted at
/run/secrets/<name>) and Kubernetes Secret volumes, and keeps the value out of the process
environment, so ``docker service inspect`` / ``docker inspect`` show the path, never the secret.

Chosen over pydantic-settings' ``secrets_dir``, which reads ``<dir>/<field name>`` when it
exists and silently ignores it when it does not: a misnamed secret there would quietly mean
"no db_url" (the SQLite file instead of the fleet's PostgreSQL) or "no admin token". Here the
variable says which file, and a file that cannot be read is an error naming the variable and
the path.

Rules (as the postgres image's): an empty ``X_FILE`` counts as unset; ``X`` and ``X_FILE``
both non-empty is an error; the content, without surrounding whitespace (the newline ``echo``
or an editor leaves), then goes through the same validation as ``X`` itself. A problem is
handed to the field's validator as a ``SecretFileProblem`` so that it surfaces as an ordinary
ValidationError of that field; its message never contains the file's content.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

# Longer than any URL or token; a path to a log or a device by mistake is refused, not read.
MAX_SECRET_FILE_BYTES = 64 * 1024


class SecretFileProblem:
    """Why ``X_FILE`` gave no value: what the field validator raises (no secret in it)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"SecretFileProblem({self.message!r})"


def read_secret_file(variable: str, path: str) -> str | SecretFileProblem:
    """The content of ``path`` stripped of surrounding whitespace, or why it cannot be used
    (naming ``variable`` and ``path``, never what the file holds)."""
    where = f"{variable}={path}"
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as e:
        why = e.strerror or type(e).__name__
        return SecretFileProblem(f"{where}: cannot read the file ({why})")
    if len(raw) > MAX_SECRET_FILE_BYTES:
        return SecretFileProblem(f"{where}: larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:  # its message quotes the offending byte: not repeated
        return SecretFileProblem(f"{where}: the file is not UTF-8 text")


class SecretFileSource(PydanticBaseSettingsSource):
    """``<env_prefix><FIELD>_FILE`` for the fields named; placed before the environment source,
    so that a problem (both variables set, an unreadable file) is not hidden by ``X``."""

    def __init__(self, settings_cls: type[BaseSettings], fields: tuple[str, ...]) -> None:
        super().__init__(settings_cls)
        self.fields = fields
        self.prefix = str(self.config.get("env_prefix", "")).upper()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Required by the base class; __call__ below does the work for the few fields it reads.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        # Variable names compare case-insensitively, as pydantic-settings' own env source does.
        env = {k.upper(): v for k, v in os.environ.items()}
        values: dict[str, Any] = {}
        for name in self.fields:
            variable = f"{self.prefix}{name.upper()}"
            path = env.get(f"{variable}_FILE", "")
            if not path:
                continue
            if env.get(variable, ""):
                values[name] = SecretFileProblem(
                    f"both {variable} and {variable}_FILE are set: set one of them"
                )
            else:
                values[name] = read_secret_file(f"{variable}_FILE", path)
        return values
