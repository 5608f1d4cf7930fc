"""Settings: env prefix, fail-fast validation, CLI flag overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, is_loopback


def test_env_prefix(monkeypatch: pytest.MonkeyPatch, model_repo: Path) -> None:
    monkeypatch.setenv("FERCOMP_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("FERCOMP_MODELS_DIR", str(model_repo))
    monkeypatch.setenv("FERCOMP_ADMIN_TOKEN", "s3cr3t")
    s = Settings()
    assert s.max_batch_size == 7 and s.models_dir == model_repo
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(s)
    assert (s.grpc_port, s.http_port, s.host) == (50051, 8000, "127.0.0.1")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.4", "example.org"])
def test_network_host_without_token_refused(host: str, model_repo: Path) -> None:
    with pytest.raises(ValidationError, match="FERCOMP_ADMIN_TOKEN"):
        Settings(host=host, models_dir=model_repo)
    with pytest.raises(ValidationError, match="FERCOMP_ADMIN_TOKEN"):
        Settings(host=host, models_dir=model_repo, admin_token="   ")  # blank is not a token
    assert Settings(host=host, models_dir=model_repo, admin_token="t").admin_open is False
    assert Settings(host=host, models_dir=model_repo, admin_auth_disabled=True).admin_open


def test_loopback_without_token_is_open(model_repo: Path) -> None:
    assert Settings(models_dir=model_repo).admin_open
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "host.local"]))


@pytest.mark.parametrize(
    "bad",
    [
        {"grpc_port": 9000, "http_port": 9000},
        {"max_batch_size": 0},
        {"max_queue_size": 0},
        {"device": "tpu"},
        {"preload_codecs": "some"},
        {"canary_data": "/nonexistent/canary.npz"},
        {"request_timeout": 0},
        {"max_streams": 32, "grpc_workers": 32},  # no thread left for unary calls and health
        {"max_streams": 0},
        {"stream_max_in_flight": 0},
        {"max_payload_bytes": 1 << 20, "grpc_max_message_bytes": 1 << 20},
        {"store_synchronous": "off"},
    ],
)
def test_invalid_values_refused(bad: dict[str, object], model_repo: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(models_dir=model_repo, **bad)


def test_missing_models_dir_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a directory"):
        Settings(models_dir=tmp_path / "missing")


def test_cli_flags_override_env(monkeypatch: pytest.MonkeyPatch, model_repo: Path) -> None:
    from cli.serve_cmd import register, settings_from_args

    monkeypatch.setenv("FERCOMP_GRPC_PORT", "6000")
    monkeypatch.setenv("FERCOMP_HTTP_PORT", "6001")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--http-port", "7001", "--models", str(model_repo)])
    s = settings_from_args(args)
    assert (s.grpc_port, s.http_port, s.models_dir) == (6000, 7001, model_repo)
    bad = parser.parse_args(["serve", "--host", "0.0.0.0", "--models", str(model_repo)])
    with pytest.raises(ValueError, match="FERCOMP_ADMIN_TOKEN"):
        settings_from_args(bad)


def test_preload_and_precision_flags(model_repo: Path) -> None:
    from cli.serve_cmd import register, settings_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    base = ["serve", "--models", str(model_repo)]
    s = settings_from_args(parser.parse_args(base))
    assert (s.preload_codecs, s.inference_precision) == ("release", "auto")
    s = settings_from_args(parser.parse_args([*base, "--preload", "all", "--precision", "fp32"]))
    assert (s.preload_codecs, s.inference_precision) == ("all", "fp32")
