"""``fercomp rollout`` and ``fercomp fleet status`` against a live server."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from cli.main import main
from service.settings import Settings
from tests.service.conftest import Live, running

TOKEN = "cli-rollout-token"


@pytest.fixture
def live(model_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    for key in list(os.environ):  # the developer's shell must not configure the server
        if key.startswith("FERCOMP_"):
            monkeypatch.delenv(key)
    repo = Path(shutil.copytree(model_repo, tmp_path / "models"))
    settings = Settings(
        host="127.0.0.1", grpc_port=0, http_port=0, models_dir=repo, device="cpu",
        db_path=tmp_path / "p.sqlite3", decode_isolation="inline", fleet_poll_s=0.2,
        instance_id="cli-replica", admin_token=SecretStr(TOKEN),
    )  # fmt: skip
    with running(settings) as live:
        yield live


def server(live: Live) -> list[str]:
    return ["--server", f"http://127.0.0.1:{live.ports.http}"]


def test_rollout_waits_until_every_replica_serves_it(
    live: Live, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FERCOMP_ADMIN_TOKEN", TOKEN)
    assert main(["rollout", *server(live), "--classifier", "tiny-classifier", "--wait", "60"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rollout 1: codec=None classifier=tiny-classifier/2\n")
    assert "1 live, 1 converged, 0 applying, 0 failed, 0 diverged: CONVERGED" in out
    assert "cli-replica  converged  1    tiny-codec/1  tiny-classifier/2" in out
    assert out.rstrip().endswith("converged")
    assert live.state.registry.active_classifier.ref == "tiny-classifier/2"

    assert main(["fleet", "status", *server(live), "--json"]) == 0
    fleet = json.loads(capsys.readouterr().out)
    assert fleet["converged"] and fleet["desired"]["generation"] == 1
    assert fleet["desired"]["requested_by"]  # user@host of whoever ran it


def test_rollout_a_replica_refuses_exits_1_with_the_reason(
    live: Live, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FERCOMP_ADMIN_TOKEN", TOKEN)
    # weights that fail their checksum: the route reads the manifest only, the replica refuses
    weights = live.state.settings.models_dir / "tiny-classifier" / "2" / "weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    code = main(["rollout", *server(live), "--classifier", "tiny-classifier/2", "--wait", "60"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "failed on cli-replica (they keep serving their models)" in out
    assert "cli-replica  failed" in out and "invalid_artifact:" in out
    assert live.state.registry.active_classifier.ref == "tiny-classifier/1"


def test_rollout_refusals_are_one_line(
    live: Live, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollout", *server(live), "--codec", "tiny-codec/2"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 401: unauthenticated" in err and "set FERCOMP_ADMIN_TOKEN" in err
    monkeypatch.setenv("FERCOMP_ADMIN_TOKEN", TOKEN)
    assert main(["rollout", *server(live), "--codec", "tiny-codec/9"]) == 2
    assert "HTTP 404: not_found" in capsys.readouterr().err
    assert main(["rollout", *server(live)]) == 2
    assert "name a --codec, a --classifier, or both" in capsys.readouterr().err
    assert main(["fleet", "status", "--server", "http://127.0.0.1:9"]) == 2
    assert "cannot reach http://127.0.0.1:9/v1/fleet" in capsys.readouterr().err
    assert live.http.get("/v1/fleet").json()["desired"] is None


def test_rollout_reads_the_token_from_a_file(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mounted secret works as the variable does; a wrong one is refused by the server."""
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    monkeypatch.setenv("FERCOMP_ADMIN_TOKEN_FILE", str(secret))
    assert main(["rollout", *server(live), "--classifier", "tiny-classifier"]) == 0
    assert live.state.store.fleet.desired() is not None
    secret.write_text("not-the-token\n")
    assert main(["rollout", *server(live), "--classifier", "tiny-classifier"]) != 0
    monkeypatch.setenv("FERCOMP_ADMIN_TOKEN", TOKEN)
    with pytest.raises(SystemExit, match="not both"):
        main(["rollout", *server(live), "--classifier", "tiny-classifier"])
    capsys.readouterr()
