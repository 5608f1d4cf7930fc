"""REST's classify result is the gRPC response's fields, as protobuf's JSON writes them."""

from __future__ import annotations

import random

import numpy as np
from google.protobuf import json_format

from core.labels import EXPRESSIONS
from service.convert import float32_json, to_proto, to_result
from service.schemas import ClassifyResult
from service.types import Prediction


def _prediction(rng: random.Random) -> Prediction:
    raw = [rng.random() ** 3 for _ in EXPRESSIONS]
    probs = [v / sum(raw) for v in raw]
    best = max(range(len(probs)), key=probs.__getitem__)
    return Prediction(
        id=f"{rng.getrandbits(128):032x}", request_id=f"req-{rng.randrange(10**6)}",
        client_id="cam", stream_id="", created_at=1.7e9, expression=best,
        expression_name=EXPRESSIONS[best], probabilities=probs, codec_version="c/1",
        codec_id="0a1b2c3d", classifier_version="k/2", received_bytes=rng.randrange(1, 2000),
        height=48, width=48, channels=1, decode_ms=rng.random() * 5,
        inference_ms=rng.random() * 9, queue_ms=rng.random(), batch_size=8, transport="http",
    )  # fmt: skip


def test_to_result_equals_protobufs_json_of_the_grpc_response() -> None:
    rng = random.Random(0)
    for _ in range(500):
        p = _prediction(rng)
        via_json = json_format.MessageToDict(
            to_proto(p), preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        expected = ClassifyResult.model_validate(via_json)
        assert to_result(p) == expected
        assert to_result(p).model_dump_json() == expected.model_dump_json()  # the bytes sent


def test_float32_json_is_the_shortest_decimal_of_the_same_float32() -> None:
    for v in (0.0, 1.0, 0.1, 1 / 3, 1e-8, 0.99999994, 2.5e-38):
        out = float32_json(v)
        assert np.float32(out) == np.float32(v)
    assert float32_json(0.1) == 0.1 and float32_json(1 / 3) == 0.33333334
