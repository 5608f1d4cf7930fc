"""Entropy decoding in a supervised child process: a native crash costs requests, not the server.

CompressAI's rANS decoder is C++ without bounds checks. ``core/entropy_guard.py`` keeps it
inside its input by construction; this is the second wall. The part of decoding that runs
native code on untrusted bytes — both entropy decoders and the float64 hyper-synthesis between
them (``FaceCodec.decode_latents``) — runs in one child process; synthesis ``g_s`` and the
classifier stay in the server (on the GPU when there is one).

* The child comes from a ``forkserver`` that has imported torch and CompressAI once (no
  inherited gRPC threads or CUDA state, and a replacement child is a fork away, not seconds of
  imports). It loads each codec from its artifact folder on first use (checksum-verified, like
  the server's own copy) and returns the quantised latents ``y_hat`` as a float32 array.
* If the child dies (a signal, an abort, OOM), the calls in flight fail with
  ``DecoderCrashed`` (``decoder_crash``: INVALID_ARGUMENT / 400, the input is to blame), a fresh
  child is started for the next call, and the server keeps serving. The engine already retries
  a failing group item by item, so a crashing face does not fail its batch-mates.
* ``inline`` mode (``FERCOMP_DECODE_ISOLATION=inline``) decodes in the server process, for
  measurements and for environments that cannot spawn processes.

Cost and crash recovery are measured by ``benchmarks/served_throughput.py`` and
``tests/service/test_decode_worker.py``; figures in docs/RELIABILITY.md.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from core import bitstream
from core.artifacts import load_codec
from core.face_codec import FaceCodec
from service.errors import DecoderCrashed

log = logging.getLogger("fercomp.service.decode")


# -- the child's side --------------------------------------------------------------------------
_CODECS: dict[str, FaceCodec] = {}


def _child_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _child_decode(art_dir: str, containers: list[bitstream.Container]) -> NDArray[np.float32]:
    codec = _CODECS.get(art_dir)
    if codec is None:
        codec = _CODECS[art_dir] = load_codec(art_dir)[0]
    out: NDArray[np.float32] = codec.decode_latents(containers).numpy()
    return out


def _child_ping() -> bool:
    return True


# -- the server's side -------------------------------------------------------------------------
class LatentDecoder:
    """``decode_latents(codec_dir, codec, containers)``, inline or in a supervised child."""

    def __init__(self, isolation: str = "process", threads: int = 1) -> None:
        if isolation not in ("process", "inline"):
            raise ValueError(f"decode isolation must be process or inline, got {isolation!r}")
        self.isolation = isolation
        self.threads = threads
        self.restarts = 0
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the child now (seconds of imports), so the first request does not wait."""
        if self.isolation == "process":
            self._executor().submit(_child_ping).result()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload([__name__])
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=ctx,
                    initializer=_child_init,
                    initargs=(self.threads,),
                )
            return self._pool

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:  # the first caller to notice replaces it
                self._pool = None
                self.restarts += 1
                log.error("entropy decoder process died; restarting it (restart %d)", self.restarts)
        broken.shutdown(wait=False, cancel_futures=True)
        # Warm the replacement now, off the request path of whoever comes next.
        threading.Thread(target=self._warm, name="fercomp-decoder-restart", daemon=True).start()

    def _warm(self) -> None:
        try:
            self._executor().submit(_child_ping).result(timeout=120)
        except Exception:  # the next call reports it; nothing to do here
            log.exception("could not restart the entropy decoder process")

    def decode_latents(
        self, codec_dir: Path, codec: FaceCodec, containers: list[bitstream.Container]
    ) -> torch.Tensor:
        if self.isolation == "inline":
            return codec.decode_latents(containers)
        pool = self._executor()
        try:
            y_hat = pool.submit(_child_decode, str(codec_dir), containers).result()
        except BrokenProcessPool as e:
            self._restart(pool)
            raise DecoderCrashed(
                "the entropy decoder crashed on this input (the server restarted it)"
            ) from e
        return torch.from_numpy(y_hat)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
