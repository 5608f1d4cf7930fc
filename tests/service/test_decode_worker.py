"""Entropy decoding in a supervised child process (service/decode_worker.py, issue 9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import torch

from core.artifacts import load_codec
from proto.fercomp.v1 import fercomp_pb2 as pb
from service.decode_worker import DecoderCrashed, LatentDecoder
from tests.service.conftest import running
from tests.service.serve_process import Proc, ServeProcess, descendants

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux's"
)


def _child_pids(decoder: LatentDecoder) -> list[int]:
    pool = decoder._pool
    assert pool is not None
    return [p.pid for p in pool._processes.values()]  # type: ignore[union-attr]


@pytest.fixture
def codec_and_containers(model_repo: Path):
    """Format v1 faces: the only ones that go to the child."""
    art = model_repo / "tiny-codec" / "1"
    codec, _ = load_codec(art)
    g = torch.Generator().manual_seed(0)
    payloads = codec.encode(torch.rand(4, 1, 48, 48, generator=g), version=1)
    return art, codec, [codec.parse(p) for p in payloads]


def test_format_v2_decodes_in_process_and_mixed_batches_keep_their_order(
    codec_and_containers,
) -> None:
    art, codec, v1 = codec_and_containers
    g = torch.Generator().manual_seed(0)
    v2 = [codec.parse(p) for p in codec.encode(torch.rand(4, 1, 48, 48, generator=g))]
    assert {c.header.version for c in v2} == {2}
    decoder = LatentDecoder("process")  # not started: a v2-only call must not need the child
    try:
        y2 = decoder.decode_latents(art, codec, v2)
        assert decoder._pool is None
        mixed = [v1[0], v2[1], v1[2], v2[3]]
        y_mixed = decoder.decode_latents(art, codec, mixed)
        assert decoder._pool is not None  # the v1 faces went to the child
    finally:
        decoder.close()
    # Same images, either format: the mixed batch holds each face's latents in its place.
    assert torch.equal(y_mixed, y2) and torch.equal(y2, codec.decode_latents(v1))


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


def test_server_survives_its_decoder_dying(make_settings, format_v1_payloads) -> None:
    payloads_v1 = format_v1_payloads
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


@linux_only
@pytest.mark.timeout(600)  # a process start: importing torch is slow on a loaded machine
def test_decoder_processes_die_with_a_sigkilled_server(model_repo: Path, tmp_path: Path) -> None:
    """Issue 33: SIGKILL runs no cleanup in the server, yet its forkserver, resource tracker
    and decoder child (1.6 GB) must not outlive it."""
    # decode_isolation "process", the v1 decoder started at start-up
    server = ServeProcess(
        model_repo, tmp_path / "p.sqlite3", env={"FERCOMP_DECODE_V1_PRESTART": "true"}
    )
    tree: list[Proc] = []
    try:
        deadline = time.monotonic() + 60
        children: list[Proc] = []
        while not children and time.monotonic() < deadline:  # "serving" comes after the ping
            tree = descendants(server.proc.pid)
            forkservers = [p for p in tree if "multiprocessing.forkserver" in p.cmdline]
            children = [c for f in forkservers for c in descendants(f.pid)]
            time.sleep(0.1)
        assert children, f"no forkserver with a decoder child under the server: {tree}"
        tree = descendants(server.proc.pid)
        server.proc.send_signal(signal.SIGKILL)
        assert server.proc.wait(30) == -signal.SIGKILL
        t_kill = time.monotonic()
        while (left := [p for p in tree if p.alive()]) and time.monotonic() < t_kill + 30:
            time.sleep(0.1)
        print(f"{len(tree)} processes under the server, all gone {time.monotonic() - t_kill:.2f}"
              " s after its SIGKILL" if not left else f"left: {left}")  # fmt: skip
        assert not left, f"outlived the SIGKILLed server by 30 s: {left}"
    finally:
        server.kill()
        for p in tree:  # never leave them behind, even when the test fails
            if p.alive():
                os.kill(p.pid, signal.SIGKILL)


@linux_only
def test_die_with_parent_sets_pdeathsig_or_exits() -> None:
    """The child's half of the guarantee above, both outcomes of the race with its parent (in a
    fresh process: forking this multi-threaded one to call into libc is not safe)."""
    script = """if True:
        import ctypes, os
        from service.decode_worker import _die_with_parent
        _die_with_parent(os.getppid())  # the parent is alive: armed
        sig = ctypes.c_int(0)
        ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
        print(sig.value, flush=True)
        _die_with_parent(os.getppid() + 1)  # not the parent: as if it had died before prctl
        print("still running", flush=True)
    """
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=240
    )
    assert (r.returncode, r.stdout.split()) == (1, [str(int(signal.SIGKILL))]), r.stderr
