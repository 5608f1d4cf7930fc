"""A minimal in-process FerService for client tests (independent of service/).

Decodes with every codec of a model repository (chosen by the header's codec id), classifies
with one classifier, follows the proto contract: unary errors are INVALID_ARGUMENT with the
bitstream error code in trailing metadata "fercomp-error-code"; stream errors are per-item
ItemErrors and the stream goes on. ``fail_first`` makes the first N Classify calls answer
UNAVAILABLE (to exercise the client's retry policy); ``calls`` counts attempts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import torch

from core import bitstream
from core.artifacts import ModelRepository, load_classifier, load_codec
from core.classifier import EXPRESSIONS
from proto.fercomp.v1 import fercomp_pb2, fercomp_pb2_grpc


class FakeFerServicer(fercomp_pb2_grpc.FerServiceServicer):
    def __init__(self, repo_root: Path, fail_first: int = 0) -> None:
        repo = ModelRepository(repo_root)
        self.codecs = {}
        for m in repo.list("codec"):
            codec, _ = load_codec(repo.path(m.ref))
            self.codecs[m.codec_id] = (codec, m.ref)
        self.classifier, cm = load_classifier(repo.path("tiny-classifier/1"), "cpu")
        self.classifier_ref = cm.ref
        self.fail_first = fail_first
        self.calls = 0
        self.labels: list[int | None] = []
        self.stream_ids: list[str] = []
        self._lock = threading.Lock()
        self._next_id = 0

    def _classify(
        self, req: fercomp_pb2.ClassifyRequest, index: int
    ) -> fercomp_pb2.ClassifyResponse:
        header = bitstream.read_header(req.bitstream)  # raises BitstreamError
        if header.codec_id_hex not in self.codecs:
            raise bitstream.UnknownCodec(f"codec {header.codec_id_hex} is not loaded")
        codec, ref = self.codecs[header.codec_id_hex]
        x = codec.decode([req.bitstream])[0]
        with torch.no_grad():
            probs = self.classifier.predict_proba(x.unsqueeze(0))[0]
        idx = int(probs.argmax())
        with self._lock:
            self._next_id += 1
            rid = req.request_id or f"srv-{self._next_id}"
            self.labels.append(req.label if req.HasField("label") else None)
        return fercomp_pb2.ClassifyResponse(
            request_id=rid,
            expression=idx,
            expression_name=EXPRESSIONS[idx],
            probabilities=[float(p) for p in probs],
            codec_version=ref,
            codec_id=header.codec_id_hex,
            classifier_version=self.classifier_ref,
            decode_ms=1.0,
            inference_ms=2.0,
            received_bytes=len(req.bitstream),
            index=index,
        )

    def Classify(self, request, context):
        with self._lock:
            self.calls += 1
            fail = self.calls <= self.fail_first
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        try:
            return self._classify(request, 0)
        except bitstream.BitstreamError as e:
            context.set_trailing_metadata((("fercomp-error-code", e.code),))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{e.code}: {e}")

    def ClassifyStream(self, request_iterator, context):
        for i, req in enumerate(request_iterator):
            with self._lock:
                self.stream_ids.append(req.stream_id)
            try:
                yield self._classify(req, i)
            except bitstream.BitstreamError as e:
                yield fercomp_pb2.ClassifyResponse(
                    index=i, error=fercomp_pb2.ItemError(code=e.code, message=str(e))
                )

    def ListModels(self, request, context):
        models = [
            fercomp_pb2.ModelInfo(
                name=ref.split("/")[0],
                version=ref.split("/")[1],
                kind="codec",
                codec_id=cid,
                active=ref == "tiny-codec/1",
            )
            for cid, (_, ref) in self.codecs.items()
        ]
        return fercomp_pb2.ListModelsResponse(models=models)


@contextmanager
def running_server(servicer: FakeFerServicer) -> Iterator[str]:
    """Serve on a free localhost port; yields "127.0.0.1:PORT"."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    fercomp_pb2_grpc.add_FerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
