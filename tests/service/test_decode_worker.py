"""Entropy decoding in a supervised child process (service/decode_worker.py, issue 9)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc
import pytest
import torch

from core.artifacts import load_codec
from proto.fercomp.v1 import fercomp_pb2 as pb
from service.decode_worker import DecoderCrashed, LatentDecoder
from tests.service.conftest import running


def _child_pids(decoder: LatentDecoder) -> list[int]:
    pool = decoder._pool
    assert pool is not None
    return [p.pid for p in pool._processes.values()]  # type: ignore[union-attr]


@pytest.fixture
def codec_and_containers(model_repo: Path):
    art = model_repo / "tiny-codec" / "1"
    codec, _ = load_codec(art)
    payloads = codec.encode(torch.rand(4, 1, 48, 48, generator=torch.Generator().manual_seed(0)))
    return art, codec, [codec.parse(p) for p in payloads]


def test_process_decoding_matches_inline(codec_and_containers) -> None:
    art, codec, containers = codec_and_containers
    decoder = LatentDecoder("process")
    try:
        decoder.start()
        y_child = decoder.decode_latents(art, codec, containers)
    finally:
        decoder.close()
    assert torch.equal(y_child, LatentDecoder("inline").decode_latents(art, codec, containers))


def test_a_dead_decoder_process_fails_the_call_and_is_replaced(codec_and_containers) -> None:
    art, codec, containers = codec_and_containers
    decoder = LatentDecoder("process")
    try:
        decoder.start()
        (pid,) = _child_pids(decoder)
        os.kill(pid, signal.SIGSEGV)  # what a native crash looks like from outside
        with pytest.raises(DecoderCrashed) as e:
            for _ in range(50):  # the pool notices the death on the next call at the latest
                decoder.decode_latents(art, codec, containers)
        assert e.value.code == "decoder_crash"
        assert decoder.restarts == 1
        y = decoder.decode_latents(art, codec, containers)  # a fresh child
        assert y.shape[0] == len(containers)
        assert _child_pids(decoder) != [pid]
    finally:
        decoder.close()


def test_server_survives_its_decoder_dying(make_settings, payloads_v1) -> None:
    with running(make_settings(decode_isolation="process")) as live:
        decoder = live.state.api.decoder
        assert decoder.isolation == "process"
        ok = live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[0]), timeout=30)
        assert ok.expression_name
        (pid,) = _child_pids(decoder)
        os.kill(pid, signal.SIGKILL)
        answers = []
        for p in payloads_v1[:4]:
            try:
                r = live.stub.Classify(pb.ClassifyRequest(bitstream=p), timeout=60)
                answers.append(r.expression_name)
            except grpc.RpcError as err:  # at most the call that met the dead child
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
                answers.append(None)
        assert answers.count(None) <= 1 and answers[-1]
        assert decoder.restarts == 1
        assert live.http.get("/readyz").status_code == 200
