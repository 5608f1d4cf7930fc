"""Serving a network-reachable address without TLS is allowed (TLS may terminate in a proxy in
front) but never silent: a WARNING log record and a plain line on stderr."""

from __future__ import annotations

import logging

import pytest

from tests.service.conftest import SettingsFactory, running


def _plaintext_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records
        if r.name == "fercomp.service" and r.levelno == logging.WARNING and "TLS" in r.message
    ]  # fmt: skip


def test_network_host_without_tls_warns_loudly(
    make_settings: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="fercomp")
    with running(make_settings(host="0.0.0.0", admin_token="t")) as live:
        assert live.http.get("/readyz").status_code == 200  # it does serve
    (record,) = _plaintext_warnings(caplog)
    assert "0.0.0.0" in record.message and "plaintext" in record.message
    stderr = capfd.readouterr().err
    assert "WARNING: serving 0.0.0.0" in stderr and "WITHOUT TLS" in stderr


def test_loopback_is_quiet(
    make_settings: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="fercomp")
    with running(make_settings()):
        pass
    assert _plaintext_warnings(caplog) == []
    assert "WITHOUT TLS" not in capfd.readouterr().err
