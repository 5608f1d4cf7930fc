"""Shared FastAPI dependencies: the service state and the admin bearer-token check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.http.errors import http_error
from service.state import ServiceState

_bearer = HTTPBearer(auto_error=False)


async def get_state(request: Request) -> ServiceState:
    """``async`` on purpose: it blocks on nothing, and a sync dependency would cost every
    route a hop through anyio's thread pool (for the health routes: a wait for a free thread
    while classify requests hold them all)."""
    state: ServiceState = request.app.state.fercomp
    return state


State = Annotated[ServiceState, Depends(get_state)]


def require_admin(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 without a bearer token, 403 with a wrong one (constant-time comparison)."""
    settings = state.settings
    if settings.admin_open:
        return  # loopback without a token, or FERCOMP_ADMIN_AUTH_DISABLED=true
    assert settings.admin_token is not None
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise http_error(
            "unauthenticated", "admin bearer token required", {"WWW-Authenticate": "Bearer"}
        )
    expected = settings.admin_token.get_secret_value().encode()
    if not secrets.compare_digest(credentials.credentials.encode(), expected):
        raise http_error("forbidden", "admin token is not valid")


Admin = Annotated[None, Depends(require_admin)]
