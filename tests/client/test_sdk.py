"""FerClient against the real server: unary, many, stream, retries, errors."""

from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from PIL import Image

from client.bandwidth import BandwidthMeter
from client.channel import service_config
from client.results import FerClientError, ItemErrorResult, Prediction
from client.sdk import FerClient
from core import bitstream, stream_framing
from core.artifacts import load_codec
from core.classifier import parse_label
from core.face_codec import FaceCodec
from core.preprocess import face_to_tensor
from service.app import Server
from service.errors import ShuttingDown
from tests.client.conftest import running_server, stored, target_of


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_classify_one_image(live_server, tiny_codec: FaceCodec, faces) -> None:
    target, server = live_server
    meter = BandwidthMeter()
    with FerClient(target, codec=tiny_codec, meter=meter) as client:
        p = client.classify(faces[0], label="happy", request_id="r-1")
    assert isinstance(p, Prediction)
    assert p.request_id == "r-1" and p.codec_version == "tiny-codec/1"
    assert p.classifier_version == "tiny-classifier/1"
    assert p.codec_id == tiny_codec.codec_id_hex
    assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert p.confidence == max(p.probabilities.values())
    assert p.bytes_sent == len(tiny_codec.encode(face_to_tensor(faces[0]).unsqueeze(0))[0])
    assert p.label == 3 and p.decode_ms is not None and p.decode_ms >= 0
    assert p.latency_ms and p.latency_ms > 0
    assert stored(server, 1)[0]["label"] == 3  # the label reached the server
    assert meter.summary().faces == 1 and meter.summary().sent_bytes == p.bytes_sent


def test_bad_bitstream_is_a_clear_error(live_server, tiny_codec: FaceCodec) -> None:
    target, _ = live_server
    with FerClient(target, codec=tiny_codec) as client, pytest.raises(FerClientError) as ei:
        client.classify_bitstream(b"garbage!" * 4)
    assert ei.value.status == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.code == "bad_magic" and "INVALID_ARGUMENT" in str(ei.value)


def test_classify_many_keeps_input_order(live_server, tiny_codec: FaceCodec, faces) -> None:
    target, _ = live_server
    with FerClient(target, codec=tiny_codec) as client:
        streams = [client.encode(f)[1].payload for f in faces]
        expected = [client.classify_bitstream(s).probabilities for s in streams]
        many = client.classify_many(streams * 3, concurrency=4)
        # The server batches concurrent calls: same answers, up to float rounding.
        got = [list(r.probabilities.values()) for r in many]  # type: ignore[union-attr]
        want = [list(p.values()) for p in expected * 3]
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g == pytest.approx(w, abs=1e-5)
        assert [r.index for r in many] == list(range(len(streams) * 3))
        # Images go through crop + batched encoding; labels travel with their image.
        images = client.classify_many(faces, concurrency=3, labels=list(range(len(faces))))
        assert [r.label for r in images] == list(range(len(faces)))  # type: ignore[union-attr]
        assert all(isinstance(r, Prediction) and r.bytes_sent > 0 for r in images)


def test_classify_many_reports_item_errors_in_place(
    live_server, tiny_codec: FaceCodec, faces, tmp_path: Path
) -> None:
    target, _ = live_server
    bad_file = tmp_path / "broken.png"
    bad_file.write_bytes(b"nope")
    items = [faces[0], b"FRgarbage", bad_file, faces[1]]
    with FerClient(target, codec=tiny_codec) as client:
        res = client.classify_many(items, return_errors=True)
        assert [type(r).__name__ for r in res] == [
            "Prediction",
            "ItemErrorResult",
            "ItemErrorResult",
            "Prediction",
        ]
        assert isinstance(res[2], ItemErrorResult) and res[2].code == "bad_image"
        with pytest.raises(FerClientError, match="INVALID_ARGUMENT"):  # server-side
            client.classify_many(items[:2])
        with pytest.raises(ValueError, match="cannot read image"):  # local, before sending
            client.classify_many(items[2:])


@pytest.mark.parametrize("compact", [True, False])
def test_stream_goes_on_after_a_corrupt_item(
    live_server, tiny_codec: FaceCodec, faces, compact: bool
) -> None:
    target, server = live_server
    with FerClient(target, codec=tiny_codec) as client:
        good = client.encode(faces[1])[1].payload
        frames = [faces[0], b"FRxx-corrupt", faces[2], good[:-3], good]
        out = list(client.stream(iter(frames), stream_id="video-1", compact=compact))
    kinds = [type(r).__name__ for r in out]
    assert kinds == ["Prediction", "ItemErrorResult", "Prediction", "ItemErrorResult", "Prediction"]
    assert [r.index for r in out] == [0, 1, 2, 3, 4]
    assert out[1].code  # type: ignore[union-attr]
    # Compact: the stream header went with face 0, so face 3 costs its record alone.
    saved = stream_framing.STREAM_HEADER_LEN if compact else 0
    assert out[3].code == "truncated" and out[3].bytes_sent == len(good) - 3 - saved  # type: ignore[union-attr]
    assert out[4].bytes_sent == len(good) - saved
    # The three good items were stored under the stream's id.
    assert [r["stream_id"] for r in stored(server, 3)] == ["video-1"] * 3


def test_compact_stream_matches_full_containers(live_server, tiny_codec: FaceCodec, faces) -> None:
    target, _ = live_server
    with FerClient(target, codec=tiny_codec) as client:
        payloads = [client.encode(f)[1].payload for f in faces]
        compact = list(client.stream(payloads))
        full = list(client.stream(payloads, compact=False))
        unary = [client.classify_bitstream(p) for p in payloads]
    for c, f, u in zip(compact, full, unary, strict=True):
        assert isinstance(c, Prediction) and isinstance(f, Prediction)
        assert c.expression == f.expression == u.expression
        assert list(c.probabilities.values()) == pytest.approx(list(u.probabilities.values()))
    header = stream_framing.STREAM_HEADER_LEN
    assert sum(r.bytes_sent for r in compact) == sum(map(len, payloads)) - header * (
        len(payloads) - 1
    )
    assert [r.bytes_sent for r in full] == [len(p) for p in payloads]


def test_failed_call_carries_the_server_request_id(live_server) -> None:
    target, _ = live_server
    with FerClient(target) as client, pytest.raises(FerClientError) as ei:
        client.classify_bitstream(b"garbage!", request_id="rid-client-1")
    assert ei.value.code == "bad_magic" and ei.value.request_id


def test_stream_stops_on_an_unreadable_frame(live_server, tiny_codec: FaceCodec, faces) -> None:
    target, _ = live_server
    with FerClient(target, codec=tiny_codec) as client:
        got = []
        with pytest.raises(FerClientError, match="frame 1") as ei:
            for r in client.stream([faces[0], Image.new("L", (0, 0))]):
                got.append(r)
    assert len(got) == 1 and ei.value.code == "bad_input"


def fail_first(server: Server, n: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The server answers the first ``n`` Classify calls UNAVAILABLE (it says it is shutting
    down, as a draining server does); returns the list whose length counts the attempts."""
    assert server.state is not None
    pipeline = server.state.pipeline
    real = pipeline.classify
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= n:
            raise ShuttingDown("warming up")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "classify", flaky)
    return calls


def test_unavailable_is_retried_by_grpc(
    live_server, tiny_codec: FaceCodec, faces, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, server = live_server
    calls = fail_first(server, 2, monkeypatch)
    with FerClient(target, codec=tiny_codec, retries=3) as c:
        p = c.classify(faces[0])
    assert isinstance(p, Prediction) and len(calls) == 3


def test_server_unavailable_is_a_clear_error(
    live_server, tiny_codec: FaceCodec, faces, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, server = live_server
    calls = fail_first(server, 5, monkeypatch)
    with (
        FerClient(target, codec=tiny_codec, retries=1) as c,
        pytest.raises(FerClientError) as ei,
    ):
        c.classify(faces[0])
    assert ei.value.status == grpc.StatusCode.UNAVAILABLE and ei.value.code == "unavailable"
    assert 1 <= len(calls) <= 2  # at most one try + one retry


def test_unknown_codec_is_failed_precondition(live_server, model_repo: Path, faces) -> None:
    target, _ = live_server
    codec = load_codec(model_repo / "tiny-codec" / "1")[0]
    good = bitstream.parse(codec.encode(face_to_tensor(faces[0]).unsqueeze(0))[0])
    alien = bitstream.Header(b"\xde\xad\xbe\xef", *dataclasses.astuple(good.header)[1:])
    payload = bitstream.pack(bitstream.Container(alien, good.strings))  # valid CRC, unknown id
    with FerClient(target) as client, pytest.raises(FerClientError) as ei:
        client.classify_bitstream(payload)
    assert ei.value.status == grpc.StatusCode.FAILED_PRECONDITION


def test_server_in_its_own_fixture_stops_cleanly(model_repo: Path, tmp_path: Path, faces) -> None:
    with running_server(model_repo, tmp_path / "p.sqlite3") as server:
        codec = load_codec(model_repo / "tiny-codec" / "2")[0]
        with FerClient(target_of(server), codec=codec) as c:
            assert c.classify(faces[0]).codec_version == "tiny-codec/2"


def test_unreachable_server_fails_fast(tiny_codec: FaceCodec, faces) -> None:
    start = time.monotonic()
    with (
        FerClient(f"127.0.0.1:{free_port()}", codec=tiny_codec, retries=1, timeout=5) as c,
        pytest.raises(FerClientError, match="unavailable") as ei,
    ):
        c.classify(faces[0])
    assert ei.value.status == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - start < 5


def test_list_models(live_server) -> None:
    target, _ = live_server
    with FerClient(target) as client:
        models = client.list_models()
    assert {(m["kind"], m["name"]) for m in models} == {
        ("codec", "tiny-codec"),
        ("classifier", "tiny-classifier"),
    }
    assert sorted((m["kind"], m["version"]) for m in models if m["active"]) == [
        ("classifier", "1"),
        ("codec", "1"),
    ]


def test_helpers() -> None:
    assert parse_label("Happy") == 3 and parse_label("6") == 6 and parse_label(None) is None
    with pytest.raises(ValueError):
        parse_label("bored")
    with pytest.raises(ValueError):
        parse_label(7)
    assert '"maxAttempts": 4' in service_config(3)
    assert "retryPolicy" not in service_config(0)
    with pytest.raises(ValueError):
        FerClient("no-port")
    with pytest.raises(ValueError, match="mutual TLS"):
        FerClient("localhost:1", client_cert=b"cert")
    FerClient("localhost:1", tls=True).close()  # system roots; connects lazily
