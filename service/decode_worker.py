"""Entropy decoding of format v1 in a supervised child process: a native crash costs requests,
not the server. Format v2 (constriction, memory-safe) decodes in the server process.

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

**The helper processes die with the server, however it dies** (SIGKILL and OOM included; no
``atexit`` or signal handler runs then, so the kernel has to do it). Three processes exist in
process mode: the forkserver and multiprocessing's resource tracker (children of the server)
and the decoder child (a child of the forkserver). Left alone, none of them noticed a SIGKILL
of the server: the child blocks reading its task queue, whose write end it holds itself; the
forkserver exits when its "alive" pipe reaches EOF, but multiprocessing hands the pipe's write
end to every child it forks, so the child kept it open; the resource tracker exits at EOF of a
pipe the child holds too. Each kept the next alive (1.6 GB RSS orphaned per server). Now:

1. the child closes its copy of the forkserver's alive pipe (it never starts processes, so it
   is not a client the forkserver must outlive): when the server dies, the kernel closes the
   last write end and the forkserver exits, as multiprocessing designed it to;
2. the child asks the kernel for SIGKILL when its parent, the forkserver, dies
   (``prctl(PR_SET_PDEATHSIG)``), and exits if the forkserver is already gone by then;
3. the resource tracker then reads EOF (the server and the child held its pipe) and exits.

The forkserver itself gets no PDEATHSIG: Linux sends it when the *thread* that forked it
exits, and the server's thread that first starts the forkserver (or restarts it after it died)
can be a short-lived one (``fercomp-decoder-restart``); the alive pipe closes only when the
whole server process is gone. Tested by
``tests/service/test_decode_worker.py::test_decoder_processes_die_with_a_sigkilled_server``.
Elsewhere than Linux there is no PDEATHSIG: step 2 is skipped, so the forkserver still exits
with the server but the orphaned child (and the tracker, whose pipe it holds) live until killed.

Why a forkserver and not a dedicated ``spawn`` child (which could watch the server itself):
a spawned child imports torch and CompressAI again at every start, seconds during which the
requests after a crash wait; a replacement forked from the forkserver is ready in
milliseconds. A plain ``fork`` of the server would copy its gRPC threads' locks and CUDA state.

Cost and crash recovery are measured by ``benchmarks/served_throughput.py`` and
``tests/service/test_decode_worker.py``; figures in docs/RELIABILITY.md.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
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

# The process this module was imported in. The forkserver imports it (preload), so in the child
# it is the pid of the forkserver the child was forked from: the parent it must die with.
_IMPORTED_IN = os.getpid()
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _child_init(threads: int) -> None:
    _die_with_parent(_IMPORTED_IN if os.getpid() != _IMPORTED_IN else os.getppid())
    _close_forkserver_alive_fd()
    torch.set_num_threads(threads)


def _close_forkserver_alive_fd() -> None:
    """Drop this child's write end of the forkserver's "alive" pipe (multiprocessing gives one to
    every child, so that the forkserver outlives the children that might use it; this one never
    starts processes). The server's end is then the last: the forkserver exits with it."""
    from multiprocessing import forkserver  # the child's side only

    server = forkserver._forkserver
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int):
        os.close(fd)
        setattr(server, "_forkserver_alive_fd", None)  # noqa: B010 (private: not in the stubs)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when ``parent`` (its parent, single-threaded) dies."""
    if not sys.platform.startswith("linux"):
        return  # PR_SET_PDEATHSIG is Linux-only; elsewhere an orphaned child outlives the server
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:  # a seccomp filter, say
        # Decoding still works; only a SIGKILLed server would leave this child behind.
        log.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))
        return
    if os.getppid() != parent:  # it died before prctl: no signal will come, go now
        os._exit(1)


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

    def __init__(self, isolation: str = "process", threads: int = 1, prestart: bool = True) -> None:
        """``prestart``: ``start()`` starts the child; False leaves it to the first v1 face
        (the server's default: clients write v2, which never needs it)."""
        if isolation not in ("process", "inline"):
            raise ValueError(f"decode isolation must be process or inline, got {isolation!r}")
        self.isolation = isolation
        self.threads = threads
        self.prestart = prestart
        self.restarts = 0
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the child now (seconds of imports), so the first v1 face does not wait; a
        no-op unless ``prestart``."""
        if self.isolation == "process" and self.prestart:
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
        """Same-sized containers -> y_hat, in order. Format v2 always decodes in this process
        (its decoder cannot read outside its input); format v1 goes to the child in process
        mode."""
        v1 = [i for i, c in enumerate(containers) if c.header.version == bitstream.FORMAT_V1]
        if self.isolation == "inline" or not v1:
            return codec.decode_latents(containers)
        if len(v1) == len(containers):
            return self._isolated(codec_dir, containers)
        v2 = [i for i, c in enumerate(containers) if c.header.version != bitstream.FORMAT_V1]
        y1 = self._isolated(codec_dir, [containers[i] for i in v1])
        y2 = codec.decode_latents([containers[i] for i in v2])
        out = torch.empty((len(containers), *y1.shape[1:]), dtype=y1.dtype)
        out[v1], out[v2] = y1, y2
        return out

    def _isolated(self, codec_dir: Path, containers: list[bitstream.Container]) -> torch.Tensor:
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
