"""gRPC round trips, per-item stream errors, error mapping, health and reflection."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from core.classifier import EXPRESSIONS
from proto.fercomp.v1 import fercomp_pb2 as pb
from tests.service.conftest import Live, SettingsFactory, running


@pytest.fixture(scope="module")
def live(model_repo, tmp_path_factory) -> Iterator[Live]:
    from service.settings import Settings

    db = tmp_path_factory.mktemp("grpc") / "p.sqlite3"
    settings = Settings(
        grpc_port=0, http_port=0, models_dir=model_repo, db_path=db, device="cpu",
        preload_codecs="default",
    )  # fmt: skip
    with running(settings) as live:
        yield live


def test_unary_round_trip(live: Live, payloads_v1: list[bytes]) -> None:
    r = live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[0], request_id="abc"))
    assert r.request_id == "abc"
    assert len(r.probabilities) == 7 and abs(sum(r.probabilities) - 1) < 1e-4
    assert r.expression_name == EXPRESSIONS[r.expression]
    assert r.probabilities[r.expression] == max(r.probabilities)
    assert r.codec_version == "tiny-codec/1" and r.classifier_version == "tiny-classifier/1"
    assert r.codec_id == payloads_v1[0][3:7].hex()
    assert r.received_bytes == len(payloads_v1[0]) and r.prediction_id
    assert r.decode_ms > 0 and r.inference_ms > 0 and not r.HasField("error")


def test_server_assigns_request_id_and_echoes_metadata(live: Live, payloads_v1) -> None:
    r, call = live.stub.Classify.with_call(
        pb.ClassifyRequest(bitstream=payloads_v1[1]), metadata=(("x-request-id", "rid-7"),)
    )
    assert r.request_id == "rid-7"
    # Trailing, not initial: initial metadata would commit the call and defeat client retries.
    assert ("x-request-id", "rid-7") in tuple(call.trailing_metadata())
    assert ("x-request-id", "rid-7") not in tuple(call.initial_metadata())


def test_error_trailers_carry_both_request_id_and_error_code(live: Live) -> None:
    with pytest.raises(grpc.RpcError) as e:
        live.stub.Classify(
            pb.ClassifyRequest(bitstream=b"nope"), metadata=(("x-request-id", "rid-8"),)
        )
    trailers = dict(e.value.trailing_metadata())
    assert trailers == {"x-request-id": "rid-8", "fercomp-error-code": "bad_magic"}


def test_stream_in_order_with_per_item_errors(live: Live, payloads_v1: list[bytes]) -> None:
    good = payloads_v1[:6]
    corrupt = bytearray(good[0])
    corrupt[-1] ^= 0xFF  # CRC mismatch
    items = [*good[:3], bytes(corrupt), b"nope", *good[3:]]
    reqs = [pb.ClassifyRequest(bitstream=b, stream_id="s1") for b in items]
    out = list(live.stub.ClassifyStream(iter(reqs)))
    assert [o.index for o in out] == list(range(len(items)))
    assert [o.error.code for o in out] == ["", "", "", "corrupt", "bad_magic", "", "", ""]
    # Same payload -> same prediction, whichever batch it landed in.
    unary = live.stub.Classify(pb.ClassifyRequest(bitstream=good[4]))
    assert out[6].expression == unary.expression
    assert out[6].probabilities == pytest.approx(unary.probabilities, abs=1e-5)


def test_empty_stream(live: Live) -> None:
    assert list(live.stub.ClassifyStream(iter([]))) == []


def test_corrupt_is_invalid_argument_and_server_keeps_serving(live: Live, payloads_v1) -> None:
    for bad in (payloads_v1[0][:10], b"", b"\x00" * 40):
        with pytest.raises(grpc.RpcError) as e:
            live.stub.Classify(pb.ClassifyRequest(bitstream=bad))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        codes = dict(e.value.trailing_metadata())
        assert codes["fercomp-error-code"] in ("truncated", "bad_magic")
        assert e.value.details().startswith(codes["fercomp-error-code"])
    assert live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[2])).prediction_id


def test_unknown_codec_is_failed_precondition_naming_loaded(live: Live, payloads_v2) -> None:
    with pytest.raises(grpc.RpcError) as e:
        live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v2[0]))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "unknown_codec" in e.value.details()
    active = live.state.registry.active_codec
    assert active.codec_id.hex() in e.value.details() and "tiny-codec/1" in e.value.details()


def test_bad_label_is_invalid_argument(live: Live, payloads_v1: list[bytes]) -> None:
    with pytest.raises(grpc.RpcError) as e:
        live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[0], label=9))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_list_models(live: Live) -> None:
    models = live.stub.ListModels(pb.ListModelsRequest()).models
    active = {(m.kind, m.name, m.version) for m in models if m.active}
    assert active == {("codec", "tiny-codec", "1"), ("classifier", "tiny-classifier", "1")}
    assert all(len(m.sha256) == 64 for m in models)


def test_health_and_reflection(live: Live) -> None:
    health = health_pb2_grpc.HealthStub(live.channel)
    for service in ("", "fercomp.v1.FerService"):
        r = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(live.channel)
    (resp,) = refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in resp.list_services_response.service}
    assert {"fercomp.v1.FerService", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_busy_port_fails_fast(make_settings: SettingsFactory, transport: str) -> None:
    from service.app import Server

    with running(make_settings()) as other:
        port = getattr(other.ports, transport)
        busy = make_settings(**{f"{transport}_port": port})
        with pytest.raises(OSError, match=f"(?i)cannot bind {transport}"):
            Server(busy).start()
