"""PostgreSQL URLs as settings take them, and as logs may show them (password redacted)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")
_USERINFO_PASSWORD = re.compile(r"^([^:@/]*):[^@/]*@")


def redact_url(url: str) -> str:
    """``url`` with its password (in the user info or a ``password=`` parameter) as ``***``;
    never raises, whatever the input."""
    try:
        parts = urlsplit(url)
        netloc = _USERINFO_PASSWORD.sub(r"\1:***@", parts.netloc)
        query = parts.query
        if "password" in query.lower():
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs])
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"


def check_postgres_url(url: str) -> str:
    """``url`` if it is a PostgreSQL URL libpq can parse; a ValueError that shows it only
    redacted otherwise."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        # Not shown at all: where a password sits in something else is anyone's guess.
        given = f"a {scheme}:// URL" if scheme.isalnum() else "a value without a URL scheme"
        raise ValueError(
            f"db_url must be a postgresql:// (or postgres://) URL, got {given}; "
            "leave it unset for the SQLite file db_path"
        )
    from psycopg.conninfo import conninfo_to_dict  # lazy: only a PostgreSQL setup needs it

    try:
        conninfo_to_dict(url)
    except Exception:  # libpq's message may quote the password: not repeated here
        raise ValueError(
            f"db_url {redact_url(url)!r} is not a URL libpq can parse "
            "(postgresql://user:password@host:port/dbname?param=value)"
        ) from None
    return url
