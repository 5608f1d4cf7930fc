"""FerClient: the edge SDK. Crop -> encode -> send over gRPC -> prediction.

    with FerClient("localhost:50051") as client:
        p = client.classify("face.png")
        print(p.expression, p.confidence, p.bytes_sent)

Images are prepared and encoded on the calling thread (OpenCV and codec work, batched per chunk
in ``classify_many``); only the RPCs run concurrently. Errors are ``FerClientError`` with the gRPC
status; ``UNAVAILABLE`` is retried by gRPC itself (see client/channel.py). ``stream`` sends the
compact framing by default: the codec identity once, then header-less faces
(docs/BITSTREAM.md, "Compact stream framing").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import grpc

from client.bandwidth import BandwidthMeter
from client.channel import make_channel
from client.encoder import EdgeEncoder, EncodedFace, StreamBudget, target_bytes_for
from client.faces import FaceCrop, FaceInput, prepare_face
from client.results import FaceInfo, FerClientError, ItemErrorResult, Prediction
from core import stream_framing
from core.bitstream import BitstreamError
from core.labels import parse_label
from proto.fercomp.v1 import fercomp_pb2, fercomp_pb2_grpc

log = logging.getLogger(__name__)

Item = FaceInput | bytes  # bytes: an already-encoded v1 bitstream, sent as is
Result = Prediction | ItemErrorResult

# Statuses that concern one item (its bitstream), not the connection: classify_many with
# return_errors=True reports them per item and goes on.
ITEM_STATUSES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
CHUNK = 64  # faces prepared and batch-encoded before their RPCs are sent


class FerClient:
    def __init__(
        self,
        target: str = "localhost:50051",
        tls: bool = False,
        root_certificates: bytes | str | None = None,
        client_cert: bytes | str | None = None,
        client_key: bytes | str | None = None,
        codec: Any | EdgeEncoder | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        client_id: str = "",
        meter: BandwidthMeter | None = None,
        channel_options: list[tuple[str, object]] | None = None,
        canonical_orientation: bool = True,
    ) -> None:
        """``codec``: an EdgeEncoder (several operating points + byte target), one codec (an
        ``EdgeCodec`` or a torch ``FaceCodec``), or None: the bundled default codec, and with a
        byte target or a bandwidth budget the release set's operating points that this server
        serves (``encoder_for``); loaded on first use from their edge bundles (see
        ``client.edge_codec``). ``timeout`` bounds each unary call, retries included. ``meter``
        (optional) records every face the client encodes. ``canonical_orientation`` (default):
        flip each image into its canonical left-right orientation before anything else
        (``client.faces``), so that an image and its mirror send the same bitstream and get the
        same answer; ``False`` sends images as given."""
        self.target = target
        self.timeout = timeout
        self.client_id = client_id
        self.meter = meter
        self.canonical_orientation = canonical_orientation
        self._encoder_given = codec is not None
        self._encoder = (
            codec if codec is None or isinstance(codec, EdgeEncoder) else EdgeEncoder([codec])
        )
        self._rate_encoder: EdgeEncoder | None = None
        self._encoder_lock = threading.Lock()
        self._channel = make_channel(
            target,
            tls,
            root_certificates,
            client_cert,
            client_key,
            retries,
            options=channel_options,
        )
        # The generated stub module is untyped (grpc_tools writes no annotations).
        self._stub = fercomp_pb2_grpc.FerServiceStub(self._channel)  # type: ignore[no-untyped-call]

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> FerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def encoder(self) -> EdgeEncoder:
        """The encoder given, else the bundled default codec."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = EdgeEncoder.default()
            return self._encoder

    def encoder_for(self, target_bytes: int | None) -> EdgeEncoder:
        """The encoder for faces with this byte target: the one given to the client; else the
        default codec without a target, and with one the release set's operating points
        (``EdgeEncoder.release``) narrowed to those this server serves as intended
        (``client.operating_points.served_points`` over ListModels, asked once)."""
        if self._encoder_given or target_bytes is None:
            return self.encoder
        default = self.encoder
        with self._encoder_lock:
            if self._rate_encoder is None:
                self._rate_encoder = self._served(EdgeEncoder.release(), default)
            return self._rate_encoder

    def _served(self, release: EdgeEncoder, default: EdgeEncoder) -> EdgeEncoder:
        from client.operating_points import served_points

        try:
            models = self.list_models()
        except FerClientError as e:
            log.warning(
                "cannot list the server's models (%s); rate control chooses among all %d "
                "operating points of the release set",
                e,
                len(release.points),
            )
            return release
        keep = set(
            served_points(
                [p.manifest for p in release.points if p.manifest is not None],
                models,
                default.refs[-1],
            )
        )
        points = [p for p in release.points if p.ref in keep]
        if not points:
            log.warning(
                "the server serves none of the release set's operating points %s; "
                "encoding with the default codec",
                release.refs,
            )
            return default
        if len(points) < len(release.points):
            log.info(
                "rate control: %d of %d release operating points served: %s",
                len(points),
                len(release.points),
                [p.ref for p in points],
            )
        return EdgeEncoder(points, merged=release.merged)

    # -- local work -----------------------------------------------------------------------
    def _prepare(self, image: FaceInput, detect: bool) -> FaceCrop:
        return prepare_face(
            image, detect=detect, spec=self.encoder.spec, canonical=self.canonical_orientation
        )

    def encode(
        self, image: FaceInput, detect_faces: bool = False, target_bytes: int | None = None
    ) -> tuple[FaceCrop, EncodedFace]:
        """Prepare and encode one image without sending it (with a byte target and no encoder
        given, the server is asked once which operating points it serves: ``encoder_for``)."""
        return self._encode(image, detect_faces, target_bytes)

    def _encode(
        self,
        image: FaceInput,
        detect: bool,
        target_bytes: int | None,
        paid_header: bytes | None = None,
    ) -> tuple[FaceCrop, EncodedFace]:
        crop = self._prepare(image, detect)
        enc = self.encoder_for(target_bytes).pick(crop.array, target_bytes, paid_header=paid_header)
        self._record(crop, enc)
        return crop, enc

    def _record(self, crop: FaceCrop, enc: EncodedFace) -> None:
        if self.meter is not None:
            # The same face in a compact stream: its container less the stream header.
            compact = enc.size - stream_framing.STREAM_HEADER_LEN
            self.meter.add(crop.array, enc.size, stream_bytes=compact)

    @staticmethod
    def _info(crop: FaceCrop | None, enc: EncodedFace | None, size: int, detect: bool) -> FaceInfo:
        if crop is None or enc is None:
            return FaceInfo(bytes_sent=size)
        return FaceInfo(
            bytes_sent=size,
            detected=crop.detected if detect else None,
            fallback=crop.fallback,
            box=crop.box,
            codec_over_budget=enc.over_budget,
            target_bytes=enc.target_bytes,
            mirrored=crop.mirrored,
        )

    def _request(
        self,
        payload: bytes,
        label: int | None,
        request_id: str | None,
        stream_id: str = "",
        compact: bool = False,
    ) -> fercomp_pb2.ClassifyRequest:
        """A request carrying a whole container, or (``compact``) a face record."""
        req = fercomp_pb2.ClassifyRequest(
            request_id=request_id or "",
            client_id=self.client_id,
            stream_id=stream_id,
        )
        if compact:
            req.compact_face = payload
        else:
            req.bitstream = payload
        if label is not None:
            req.label = label
        return req

    # -- unary ----------------------------------------------------------------------------
    def _send(
        self, payload: bytes, info: FaceInfo, index: int, label: int | None, request_id: str | None
    ) -> Prediction:
        req = self._request(payload, label, request_id)
        start = time.perf_counter()
        try:
            resp = self._stub.Classify(req, timeout=self.timeout)
        except grpc.RpcError as e:
            raise FerClientError.from_rpc(e, self.target) from None
        latency = (time.perf_counter() - start) * 1000.0
        return Prediction.from_response(resp, info, index, req.request_id, label, latency)

    def classify(
        self,
        image: FaceInput,
        label: str | int | None = None,
        request_id: str | None = None,
        detect_faces: bool = False,
        target_bytes: int | None = None,
    ) -> Prediction:
        crop, enc = self.encode(image, detect_faces, target_bytes)
        info = self._info(crop, enc, enc.size, detect_faces)
        return self._send(enc.payload, info, 0, parse_label(label), request_id)

    def classify_bitstream(
        self, data: bytes, label: str | int | None = None, request_id: str | None = None
    ) -> Prediction:
        return self._send(
            bytes(data), FaceInfo(bytes_sent=len(data)), 0, parse_label(label), request_id
        )

    def classify_many(
        self,
        images: Iterable[Item],
        concurrency: int = 8,
        labels: Sequence[str | int | None] | None = None,
        detect_faces: bool = False,
        target_bytes: int | None = None,
        return_errors: bool = False,
        progress: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        """Classify many images (or bitstreams), ``concurrency`` RPCs in flight; results in
        input order. With ``return_errors`` an unreadable image or a rejected bitstream gives an
        ``ItemErrorResult`` in its place; connection-level failures always raise."""
        items = list(images)
        if labels is not None and len(labels) != len(items):
            raise ValueError(f"{len(labels)} labels for {len(items)} images")
        label_ids = [parse_label(v) for v in labels] if labels is not None else [None] * len(items)
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        out: list[Result] = []
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fercomp") as pool:
            for start in range(0, len(items), CHUNK):
                jobs = self._prepare_chunk(items, start, detect_faces, target_bytes, return_errors)
                futures = [
                    pool.submit(self._send, job[0], job[1], i, label_ids[i], None)
                    if not isinstance(job, ItemErrorResult)
                    else None
                    for i, job in zip(range(start, start + len(jobs)), jobs, strict=True)
                ]
                for job, fut in zip(jobs, futures, strict=True):
                    res = job if fut is None else self._collect(fut, job, return_errors)
                    out.append(res)  # type: ignore[arg-type]
                    if progress is not None:
                        progress(res)  # type: ignore[arg-type]
        return out

    def _collect(self, fut: Any, job: Any, return_errors: bool) -> Result:
        try:
            pred: Prediction = fut.result()
            return pred
        except FerClientError as e:
            if return_errors and e.status in ITEM_STATUSES:
                _payload, info, index = job
                return ItemErrorResult(index, e.code, str(e), bytes_sent=info.bytes_sent)
            raise

    def _prepare_chunk(
        self, items: list[Item], start: int, detect: bool, target: int | None, keep_errors: bool
    ) -> list[tuple[bytes, FaceInfo, int] | ItemErrorResult]:
        """Crop all images of a chunk, then encode them in one batch per operating point."""
        jobs: list[tuple[bytes, FaceInfo, int] | ItemErrorResult | FaceCrop] = []
        for i, item in enumerate(items[start : start + CHUNK], start):
            if isinstance(item, bytes | bytearray):
                jobs.append((bytes(item), FaceInfo(bytes_sent=len(item)), i))
                continue
            try:
                jobs.append(self._prepare(item, detect))
            except (OSError, ValueError, TypeError) as e:
                if not keep_errors:
                    raise
                jobs.append(ItemErrorResult(i, "bad_image", str(e)))
        crops = [(k, j) for k, j in enumerate(jobs) if isinstance(j, FaceCrop)]
        if crops:
            encoder = self.encoder_for(target)
            encoded = encoder.encode_batch([c.array for _, c in crops], target)
            for (k, crop), enc in zip(crops, encoded, strict=True):
                self._record(crop, enc)
                jobs[k] = (enc.payload, self._info(crop, enc, enc.size, detect), start + k)
        return jobs  # type: ignore[return-value]

    # -- streaming ------------------------------------------------------------------------
    def stream(
        self,
        frames: Iterable[Item],
        stream_id: str | None = None,
        detect_faces: bool = False,
        target_bytes: int | None = None,
        budget_bps: float | None = None,
        fps: float | None = None,
        timeout: float | None = None,
        compact: bool = True,
    ) -> Iterator[Result]:
        """Classify frames over one bidirectional stream; frames are prepared and encoded
        lazily as gRPC pulls them, so a video never sits in memory. A frame the server
        rejects yields an ``ItemErrorResult`` and the stream goes on. No deadline unless
        ``timeout``.

        ``budget_bps`` (bits/s) at ``fps`` frames/s: rate control keeps the face bytes the
        stream puts on the wire (``bytes_sent``: records and stream headers, not gRPC framing)
        within the budget, over every second and over the whole stream
        (``client.encoder.StreamBudget``); ``target_bytes`` caps each face as well. Without an
        encoder given, either selects the release set's operating points (``encoder_for``).

        ``compact`` (default): send each codec's 9-byte stream header once and then only the
        face records, 9 bytes less per face; ``compact=False`` sends whole containers, for
        servers older than the compact framing. Either way ``bytes_sent`` is what the face
        put on the wire (its record, plus the stream header when it opened a new one)."""
        target = target_bytes_for(target_bytes, budget_bps, fps)  # also checks the arguments
        budget = StreamBudget(budget_bps, fps) if budget_bps is not None else None
        pending: deque[FaceInfo] = deque()
        failure: list[BaseException] = []

        def requests() -> Iterator[fercomp_pb2.ClassifyRequest]:
            it = iter(frames)
            sent_header = b""  # the stream header the server currently applies
            while True:
                try:
                    frame = next(it)
                    limit = budget.next_target(target_bytes) if budget is not None else target
                    if isinstance(frame, bytes | bytearray):
                        payload, info = bytes(frame), FaceInfo(bytes_sent=len(frame))
                    else:
                        paid = sent_header if compact else None
                        crop, enc = self._encode(frame, detect_faces, limit, paid)
                        payload, info = enc.payload, self._info(crop, enc, enc.size, detect_faces)
                except StopIteration:
                    return
                except Exception as e:  # surfaced to the caller after the stream drains
                    failure.append(e)
                    return
                record: bytes | None = None
                if compact:
                    try:
                        header, record = stream_framing.split(payload)
                    except BitstreamError:  # not a container: sent whole, the server says why
                        record = None
                if record is None:
                    if budget is not None:
                        budget.spend(len(payload))
                    pending.append(info)  # before yield: the response cannot overtake it
                    yield self._request(payload, None, None, stream_id or "")
                    continue
                sent = len(record)
                if header != sent_header:
                    yield fercomp_pb2.ClassifyRequest(
                        stream_header=fercomp_pb2.StreamHeader(header=header)
                    )
                    sent_header = header
                    sent += len(header)
                if budget is not None:
                    budget.spend(sent)
                pending.append(replace(info, bytes_sent=sent))
                yield self._request(record, None, None, stream_id or "", compact=True)

        call = self._stub.ClassifyStream(requests(), timeout=timeout)
        position = 0
        try:
            for r in call:
                info = pending.popleft() if pending else FaceInfo()
                if r.HasField("error"):
                    yield ItemErrorResult(
                        position, r.error.code, r.error.message, r.request_id, info.bytes_sent
                    )
                else:
                    yield Prediction.from_response(r, info, position)
                position += 1
        except grpc.RpcError as e:
            raise FerClientError.from_rpc(e, self.target) from None
        finally:
            call.cancel()  # no-op when finished; stops the RPC if the caller stopped early
        if failure:
            raise FerClientError(f"frame {position}: {failure[0]}", code="bad_input") from failure[
                0
            ]

    # -- models ---------------------------------------------------------------------------
    def list_models(self) -> list[dict[str, Any]]:
        try:
            resp = self._stub.ListModels(fercomp_pb2.ListModelsRequest(), timeout=self.timeout)
        except grpc.RpcError as e:
            raise FerClientError.from_rpc(e, self.target) from None
        return [
            {
                "name": m.name,
                "version": m.version,
                "kind": m.kind,
                "codec_id": m.codec_id,
                "active": m.active,
                "sha256": m.sha256,
            }
            for m in resp.models
        ]
