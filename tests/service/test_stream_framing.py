"""ClassifyStream with the compact framing (docs/BITSTREAM.md), and REST/gRPC parity of the
validation and counting the pipeline owns."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from core import stream_framing
from proto.fercomp.v1 import fercomp_pb2 as pb
from tests.service.conftest import Live, metric, running


@pytest.fixture(scope="module")
def live(model_repo, tmp_path_factory) -> Iterator[Live]:
    from service.settings import Settings

    db = tmp_path_factory.mktemp("stream") / "p.sqlite3"
    settings = Settings(
        grpc_port=0, http_port=0, models_dir=model_repo, db_path=db, device="cpu",
        preload_codecs="default", decode_isolation="inline",
    )  # fmt: skip
    with running(settings) as live:
        yield live


def header_msg(header: bytes) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(stream_header=pb.StreamHeader(header=header))


def compact_msgs(payloads: list[bytes]) -> list[pb.ClassifyRequest]:
    """A stream header, then every payload as a face record (all from one codec)."""
    header = stream_framing.split(payloads[0])[0]
    records = [stream_framing.split(p)[1] for p in payloads]
    return [header_msg(header), *(pb.ClassifyRequest(compact_face=r) for r in records)]


def test_compact_stream_predicts_like_unary_calls(live: Live, payloads_v1: list[bytes]) -> None:
    faces = payloads_v1[:5]
    out = list(live.stub.ClassifyStream(iter(compact_msgs(faces))))
    assert [o.index for o in out] == list(range(len(faces)))  # no response for the header
    for o, payload in zip(out, faces, strict=True):
        unary = live.stub.Classify(pb.ClassifyRequest(bitstream=payload))
        assert not o.HasField("error") and o.expression == unary.expression
        assert o.probabilities == pytest.approx(unary.probabilities, abs=1e-5)
        assert o.codec_id == unary.codec_id
        # What the client sent for this face: the record, 9 bytes under the container.
        assert o.received_bytes == len(payload) - stream_framing.STREAM_HEADER_LEN


def test_corrupt_compact_face_fails_only_that_face(live: Live, payloads_v1: list[bytes]) -> None:
    msgs = compact_msgs(payloads_v1[:4])
    damaged = bytearray(msgs[2].compact_face)
    damaged[-1] ^= 0xFF  # the CRC
    msgs[2] = pb.ClassifyRequest(compact_face=bytes(damaged))
    msgs.insert(4, pb.ClassifyRequest(compact_face=msgs[4].compact_face[:-3]))  # truncated
    out = list(live.stub.ClassifyStream(iter(msgs)))
    assert [o.error.code for o in out] == ["", "corrupt", "", "truncated", ""]
    assert out[1].error.message.startswith("face record: CRC")
    assert out[3].error.message.startswith("face record: string")


def test_compact_face_before_a_stream_header_is_invalid_argument(
    live: Live, payloads_v1: list[bytes]
) -> None:
    record = stream_framing.split(payloads_v1[1])[1]
    msgs = [pb.ClassifyRequest(bitstream=payloads_v1[0]), pb.ClassifyRequest(compact_face=record)]
    call = live.stub.ClassifyStream(iter(msgs))
    got = []
    with pytest.raises(grpc.RpcError) as ei:
        got.extend(call)
    assert [o.HasField("error") for o in got] == [False]  # the full container before it
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(ei.value.trailing_metadata())["fercomp-error-code"] == "bad_request"
    assert "stream_header" in ei.value.details()


def test_invalid_stream_header_ends_the_stream(live: Live) -> None:
    with pytest.raises(grpc.RpcError) as ei:
        list(live.stub.ClassifyStream(iter([header_msg(b"FR\x07" + b"\x00" * 6)])))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(ei.value.trailing_metadata())["fercomp-error-code"] == "unsupported_version"


def test_stream_header_can_change_and_mix_with_full_containers(
    live: Live, payloads_v1: list[bytes], payloads_v2: list[bytes]
) -> None:
    # tiny-codec/2 is not loaded here (preload_codecs="default"): its faces fail on their own.
    h1, r1 = stream_framing.split(payloads_v1[0])
    h2, r2 = stream_framing.split(payloads_v2[0])
    msgs = [
        header_msg(h1),
        pb.ClassifyRequest(compact_face=r1),
        header_msg(h2),
        pb.ClassifyRequest(compact_face=r2),
        pb.ClassifyRequest(bitstream=payloads_v1[1]),  # old style, in the same stream
        header_msg(h1),
        pb.ClassifyRequest(compact_face=r1),
    ]
    out = list(live.stub.ClassifyStream(iter(msgs)))
    assert [o.error.code for o in out] == ["", "unknown_codec", "", ""]
    assert out[0].probabilities == pytest.approx(out[3].probabilities, abs=1e-5)


def test_unary_classify_refuses_stream_framing(live: Live, payloads_v1: list[bytes]) -> None:
    record = stream_framing.split(payloads_v1[0])[1]
    with pytest.raises(grpc.RpcError) as ei:
        live.stub.Classify(pb.ClassifyRequest(compact_face=record))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ClassifyStream" in ei.value.details()


def _bad_request_counts(live: Live) -> tuple[float, float]:
    text = live.metrics()
    return (
        metric(text, "fercomp_requests_total", transport="grpc", status="bad_request"),
        metric(text, "fercomp_requests_total", transport="http", status="bad_request"),
    )


@pytest.mark.parametrize("label", [7, 9, -1])
def test_bad_label_is_refused_and_counted_alike_on_both_transports(
    live: Live, payloads_v1: list[bytes], label: int
) -> None:
    grpc_before, http_before = _bad_request_counts(live)
    with pytest.raises(grpc.RpcError) as ei:
        live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[0], label=label))
    r = live.http.post("/v1/classify", content=payloads_v1[0], params={"label": label})
    grpc_after, http_after = _bad_request_counts(live)
    grpc_code = dict(ei.value.trailing_metadata())["fercomp-error-code"]
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and r.status_code == 422
    assert grpc_code == r.json()["error"] == "bad_request"
    assert ei.value.details() == f"bad_request: {r.json()['detail']}"  # same message too
    assert (grpc_after - grpc_before, http_after - http_before) == (1, 1)
