"""FerClient against the fake server: unary, many, stream, retries, errors."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import grpc
import pytest
from PIL import Image

from client.bandwidth import BandwidthMeter
from client.channel import service_config
from client.results import FerClientError, ItemErrorResult, Prediction, parse_label
from client.sdk import FerClient
from core.codec import FaceCodec
from core.preprocess import face_to_tensor
from tests.client.fake_server import FakeFerServicer, running_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_classify_one_image(fake_server, tiny_codec: FaceCodec, faces) -> None:
    target, servicer = fake_server
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
    assert p.label == 3 and p.decode_ms == 1.0 and p.latency_ms and p.latency_ms > 0
    assert servicer.labels[-1] == 3
    assert meter.summary().faces == 1 and meter.summary().sent_bytes == p.bytes_sent


def test_bad_bitstream_is_a_clear_error(fake_server, tiny_codec: FaceCodec) -> None:
    target, _ = fake_server
    with FerClient(target, codec=tiny_codec) as client, pytest.raises(FerClientError) as ei:
        client.classify_bitstream(b"garbage!" * 4)
    assert ei.value.status == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.code == "bad_magic" and "INVALID_ARGUMENT" in str(ei.value)


def test_classify_many_keeps_input_order(fake_server, tiny_codec: FaceCodec, faces) -> None:
    target, _ = fake_server
    with FerClient(target, codec=tiny_codec) as client:
        streams = [client.encode(f)[1].payload for f in faces]
        expected = [client.classify_bitstream(s).probabilities for s in streams]
        many = client.classify_many(streams * 3, concurrency=4)
        assert [r.probabilities for r in many] == expected * 3  # type: ignore[union-attr]
        assert [r.index for r in many] == list(range(len(streams) * 3))
        # Images go through crop + batched encoding; labels travel with their image.
        images = client.classify_many(faces, concurrency=3, labels=list(range(len(faces))))
        assert [r.label for r in images] == list(range(len(faces)))  # type: ignore[union-attr]
        assert all(isinstance(r, Prediction) and r.bytes_sent > 0 for r in images)


def test_classify_many_reports_item_errors_in_place(
    fake_server, tiny_codec: FaceCodec, faces, tmp_path: Path
) -> None:
    target, _ = fake_server
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


def test_stream_goes_on_after_a_corrupt_item(fake_server, tiny_codec: FaceCodec, faces) -> None:
    target, servicer = fake_server
    with FerClient(target, codec=tiny_codec) as client:
        good = client.encode(faces[1])[1].payload
        frames = [faces[0], b"FRxx-corrupt", faces[2], good[:-3], good]
        out = list(client.stream(iter(frames), stream_id="video-1"))
    kinds = [type(r).__name__ for r in out]
    assert kinds == ["Prediction", "ItemErrorResult", "Prediction", "ItemErrorResult", "Prediction"]
    assert [r.index for r in out] == [0, 1, 2, 3, 4]
    assert out[1].code  # type: ignore[union-attr]
    assert out[3].code == "truncated" and out[3].bytes_sent == len(good) - 3  # type: ignore[union-attr]
    assert servicer.stream_ids[-5:] == ["video-1"] * 5


def test_stream_stops_on_an_unreadable_frame(fake_server, tiny_codec: FaceCodec, faces) -> None:
    target, _ = fake_server
    with FerClient(target, codec=tiny_codec) as client:
        got = []
        with pytest.raises(FerClientError, match="frame 1") as ei:
            for r in client.stream([faces[0], Image.new("L", (0, 0))]):
                got.append(r)
    assert len(got) == 1 and ei.value.code == "bad_input"


def test_unavailable_is_retried_by_grpc(model_repo: Path, tiny_codec: FaceCodec, faces) -> None:
    servicer = FakeFerServicer(model_repo, fail_first=2)
    with running_server(servicer) as target, FerClient(target, codec=tiny_codec, retries=3) as c:
        p = c.classify(faces[0])
    assert isinstance(p, Prediction) and servicer.calls == 3

    servicer = FakeFerServicer(model_repo, fail_first=5)
    with (
        running_server(servicer) as target,
        FerClient(target, codec=tiny_codec, retries=1) as c,
        pytest.raises(FerClientError) as ei,
    ):
        c.classify(faces[0])
    assert ei.value.status == grpc.StatusCode.UNAVAILABLE and ei.value.code == "unavailable"
    assert servicer.calls == 2  # one try + one retry, then the error


def test_unreachable_server_fails_fast(tiny_codec: FaceCodec, faces) -> None:
    start = time.monotonic()
    with (
        FerClient(f"127.0.0.1:{free_port()}", codec=tiny_codec, retries=1, timeout=5) as c,
        pytest.raises(FerClientError, match="unavailable") as ei,
    ):
        c.classify(faces[0])
    assert ei.value.status == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - start < 5


def test_list_models(fake_server) -> None:
    target, _ = fake_server
    with FerClient(target) as client:
        models = client.list_models()
    assert {m["name"] for m in models} == {"tiny-codec"}
    assert [m["version"] for m in models if m["active"]] == ["1"]


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
