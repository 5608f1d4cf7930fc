"""The edge client CLI and SDK against a real in-process server (not a fake)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from client.results import ItemErrorResult, Prediction
from client.sdk import FerClient
from core.artifacts import load_codec
from core.stream_framing import STREAM_HEADER_LEN
from service.app import Server
from service.settings import Settings


@pytest.fixture()
def server(model_repo: Path, tmp_path: Path):
    s = Settings(
        host="127.0.0.1", grpc_port=0, http_port=0, models_dir=model_repo,
        db_path=tmp_path / "p.sqlite3", admin_auth_disabled=True, log_json=False,
    )  # fmt: skip
    srv = Server(s)
    ports = srv.start()
    yield srv, ports
    srv.stop(grace=2)


def _metric(http_port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_cli_classify_against_live_server(server, model_repo: Path, tmp_path: Path, capsys):
    _, ports = server
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((60, 60)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    codec = str(model_repo / "tiny-codec" / "1")
    rc = main(
        ["classify", str(tmp_path), "--server", f"127.0.0.1:{ports.grpc}", "--codec", codec,
         "--label", "happy", "--json"]
    )  # fmt: skip
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    results = doc["results"]
    assert len(results) == 3
    assert all(r["classifier_version"] == "tiny-classifier/1" for r in results)
    sent = sum(r["bytes_sent"] for r in results)
    assert _metric(ports.http, "fercomp_received_bytes_total") == sent
    assert _metric(ports.http, "fercomp_labelled_total") == 3


def test_sdk_stream_with_a_corrupt_item(server, model_repo: Path):
    _, ports = server
    codec, _ = load_codec(model_repo / "tiny-codec" / "1")
    frames = [np.full((48, 48), v, np.uint8) for v in (30, 120, 200)]
    with FerClient(f"127.0.0.1:{ports.grpc}", codec=codec) as client:
        good = client.encode(frames[2])[1].payload
        # A frame, a cut-off bitstream, a frame, a whole bitstream: one stream, four items.
        out = list(client.stream([frames[0], good[:-3], frames[1], good]))
    assert [o.index for o in out] == [0, 1, 2, 3]
    assert [type(o).__name__ for o in out] == [
        "Prediction",
        "ItemErrorResult",
        "Prediction",
        "Prediction",
    ]
    err = out[1]
    assert isinstance(err, ItemErrorResult)
    # Compact stream framing: face 0 carried the stream header, so this face sent its record.
    assert err.code == "truncated" and err.bytes_sent == len(good) - 3 - STREAM_HEADER_LEN
    assert all(o.codec_version == "tiny-codec/1" for o in out if isinstance(o, Prediction))
