"""`fercomp classify` and `fercomp stream`: the edge client on the command line.

Heavy imports (gRPC, OpenCV, ONNX Runtime) happen inside the handlers so `fercomp --help` stays
fast. Nothing here needs torch: codecs are encoded from their edge bundles (client.edge_codec),
torch only being the fallback for an artifact without one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.bandwidth import BandwidthMeter
    from client.encoder import EdgeEncoder
    from client.results import ItemErrorResult, Prediction
    from client.sdk import FerClient

DEFAULT_SERVER = "localhost:50051"
DEFAULT_HTTP = "http://localhost:8000"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("server")
    g.add_argument(
        "--server",
        default=os.environ.get("FERCOMP_SERVER", DEFAULT_SERVER),
        metavar="HOST:PORT",
        help="gRPC address (default: $FERCOMP_SERVER or %(default)s)",
    )
    g.add_argument("--tls", action="store_true", help="use TLS (system roots unless --ca)")
    g.add_argument("--ca", metavar="FILE", help="PEM root certificate(s) to trust; implies --tls")
    g.add_argument("--cert", metavar="FILE", help="client certificate (mutual TLS, with --key)")
    g.add_argument("--key", metavar="FILE", help="client private key (mutual TLS)")
    g.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    g.add_argument(
        "--retries",
        type=int,
        default=3,
        help="retries on UNAVAILABLE, exponential backoff (default 3, max 4)",
    )
    g.add_argument("--client-id", default="", help="sent with every request")
    e = common.add_argument_group("encoding")
    e.add_argument(
        "--codec",
        action="append",
        metavar="DIR",
        help="codec artifact dir, or a model repository (all its codecs); repeat "
        "for several operating points (default: the bundled default codec; with "
        "--target-bytes/--budget-bps the release set's operating points the server serves)",
    )
    e.add_argument(
        "--target-bytes",
        type=int,
        metavar="N",
        help="bytes per face: the best operating point whose encoding fits is used",
    )
    e.add_argument(
        "--no-canonical-orientation",
        dest="canonical_orientation",
        action="store_false",
        help="send images as given; by default each image is first flipped into its canonical "
        "left-right orientation, so that a photo and its mirror send the same bitstream",
    )
    e.add_argument(
        "--sync-codec",
        action="store_true",
        help="download the server's active codec over REST (see --http) and use it",
    )
    e.add_argument(
        "--http",
        default=os.environ.get("FERCOMP_HTTP", DEFAULT_HTTP),
        metavar="URL",
        help="server REST base URL for --sync-codec (default %(default)s)",
    )
    e.add_argument(
        "--detect-faces",
        action="store_true",
        help="find the largest face (OpenCV Haar) and crop it; centre crop if none",
    )
    e.add_argument("--jpeg-quality", type=int, default=30, help="JPEG quality for the summary")
    e.add_argument("--webp-quality", type=int, default=30, help="WebP quality for the summary")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser(
        "classify",
        parents=[common],
        help="classify face images via a server",
        description="Crop, encode and classify images (files or folders).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursive)")
    p.add_argument("--label", help="ground truth for all images: expression name or 0..6")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    p.set_defaults(func=cmd_classify)

    s = sub.add_parser(
        "stream",
        parents=[common],
        help="classify video frames over a stream",
        description="Stream the frames of a video file or camera to the server.",
    )
    s.add_argument("video", nargs="?", help="video file (anything OpenCV reads)")
    s.add_argument("--camera", type=int, metavar="N", help="camera index instead of a file")
    s.add_argument("--every", type=int, default=1, metavar="N", help="send every Nth frame")
    s.add_argument("--max-frames", type=int, metavar="N", help="stop after sending N frames")
    s.add_argument(
        "--budget-bps",
        type=float,
        metavar="BPS",
        help="bandwidth budget in bits/s: per-frame byte target = BPS / 8 / fps",
    )
    s.add_argument("--fps", type=float, help="frame rate if the video does not say")
    s.add_argument("--stream-id", help="stream id sent to the server (default: file name)")
    s.set_defaults(func=cmd_stream)


# -- shared helpers ---------------------------------------------------------------------------
def collect_images(paths: list[str]) -> list[Path]:
    """Files as given, folders searched recursively for IMAGE_SUFFIXES, in sorted order."""
    from core.face_image import IMAGE_SUFFIXES

    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(
                sorted(
                    f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                )
            )
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(2, "no such file or directory", raw)
    if not out:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {' '.join(paths)}")
    return out


def build_encoder(args: argparse.Namespace) -> EdgeEncoder | None:
    """The encoder ``--codec`` / ``--sync-codec`` ask for; None for the client's own choice
    (``FerClient.encoder_for``: the default codec, the release set's operating points with a
    byte target or a budget)."""
    from client.encoder import EdgeEncoder, codec_artifact_dirs

    if args.target_bytes is not None and args.target_bytes < 1:
        raise ValueError(f"--target-bytes must be positive, got {args.target_bytes}")
    if args.sync_codec:
        if args.codec:
            raise ValueError("--sync-codec and --codec are exclusive")
        from client.sync import sync_codec

        codec, manifest, where = sync_codec(args.http, timeout=max(args.timeout, 30.0))
        print(f"using server codec {manifest.ref} (cached in {where})", file=sys.stderr)
        return EdgeEncoder([(codec, manifest)], args.target_bytes)
    if not args.codec:
        return None
    dirs = codec_artifact_dirs(args.codec)
    return EdgeEncoder.from_artifacts(dirs, args.target_bytes)


def make_client(
    args: argparse.Namespace, encoder: EdgeEncoder | None, meter: BandwidthMeter
) -> FerClient:
    from client.sdk import FerClient

    return FerClient(
        args.server,
        tls=args.tls,
        root_certificates=args.ca,
        client_cert=args.cert,
        client_key=args.key,
        codec=encoder,
        timeout=args.timeout,
        retries=args.retries,
        client_id=args.client_id,
        meter=meter,
        canonical_orientation=args.canonical_orientation,
    )


def describe(res: Prediction | ItemErrorResult) -> str:
    from client.results import ItemErrorResult

    if isinstance(res, ItemErrorResult):
        return f"error [{res.code}]: {res.message}"
    notes = []
    if res.face.fallback:
        notes.append("no face found, centre crop")
    if res.face.codec_over_budget:
        notes.append("over byte target")
    if res.correct is False:
        notes.append("label mismatch")
    extra = f"  ({'; '.join(notes)})" if notes else ""
    # Under rate control, which operating point the face went with.
    codec = f"  {res.codec_version}" if res.face.target_bytes is not None else ""
    return f"{res.expression:<8} {res.confidence:.2f}  {res.bytes_sent} B{codec}{extra}"


def _meter(args: argparse.Namespace) -> BandwidthMeter:
    from client.bandwidth import BandwidthMeter

    return BandwidthMeter(args.jpeg_quality, args.webp_quality)


# -- classify ---------------------------------------------------------------------------------
def cmd_classify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from client.results import ItemErrorResult, result_row
    from core.labels import parse_label

    files = collect_images(args.paths)
    label = parse_label(args.label)
    encoder = build_encoder(args)
    meter = _meter(args)
    with (
        make_client(args, encoder, meter) as client,
        tqdm(
            total=len(files),
            unit="img",
            file=sys.stderr,
            leave=False,
            disable=True if len(files) < 2 else None,  # None: only on a terminal
        ) as bar,
    ):
        results = client.classify_many(
            files,
            concurrency=args.concurrency,
            labels=[label] * len(files) if label is not None else None,
            detect_faces=args.detect_faces,
            target_bytes=args.target_bytes,
            return_errors=True,
            progress=lambda _r: bar.update(1),
        )
        codecs = client.encoder_for(args.target_bytes).refs
    summary = meter.summary()
    preds = [r for r in results if not isinstance(r, ItemErrorResult)]
    errors = len(results) - len(preds)
    correct = [r.correct for r in preds if r.correct is not None]
    accuracy = sum(correct) / len(correct) if correct else None
    if args.json:
        doc: dict[str, Any] = {
            "results": [result_row(r, path=str(f)) for f, r in zip(files, results, strict=True)],
            "summary": {
                "images": len(files),
                "errors": errors,
                "accuracy": accuracy,
                "codecs": codecs,
                "bandwidth": summary.to_dict(),
            },
        }
        print(json.dumps(doc, indent=2))
    else:
        width = min(60, max(len(str(f)) for f in files))
        for f, r in zip(files, results, strict=True):
            print(f"{f!s:<{width}}  {describe(r)}")
        print()
        for line in summary.lines():
            print(line)
        if accuracy is not None:
            print(f"accuracy vs --label: {sum(correct)}/{len(correct)} ({accuracy:.1%})")
        if errors:
            print(f"errors: {errors} of {len(files)} images", file=sys.stderr)
    return 1 if errors else 0


# -- stream -----------------------------------------------------------------------------------
def cmd_stream(args: argparse.Namespace) -> int:
    from client.results import ItemErrorResult, result_row
    from client.video import VideoSource, stream_video

    if (args.video is None) == (args.camera is None):
        raise ValueError("give either a VIDEO file or --camera N")
    if args.every < 1:
        raise ValueError("--every must be >= 1")
    source = args.video if args.video is not None else args.camera
    encoder = build_encoder(args)
    meter = _meter(args)
    errors = sent = faces = 0
    with VideoSource(source, args.fps) as video, make_client(args, encoder, meter) as client:
        send_fps = video.fps / args.every if video.fps else None
        for frame_no, res in stream_video(
            client,
            video,
            every=args.every,
            max_frames=args.max_frames,
            stream_id=args.stream_id,
            detect_faces=args.detect_faces,
            target_bytes=args.target_bytes,
            budget_bps=args.budget_bps,
        ):
            errors += isinstance(res, ItemErrorResult)
            sent += res.bytes_sent
            faces += 1
            if args.json:  # JSON Lines: a stream has no end to wait for
                print(json.dumps(result_row(res, frame=frame_no)), flush=True)
            else:
                print(f"frame {frame_no}: {describe(res)}", flush=True)
    summary = meter.summary()
    rate = stream_rate(sent, faces, send_fps, args.budget_bps)
    if args.json:
        doc = {"errors": errors, "bandwidth": summary.to_dict(), "rate": rate}
        print(json.dumps({"summary": doc}))
    else:
        print()
        for line in summary.lines():
            print(line)
        if rate["sent_bps"] is not None:
            budget = rate["budget_bps"]
            print(
                f"sent {rate['sent_bytes']:,} B in {rate['seconds']:.2f} s of video "
                f"({rate['faces']} faces at {send_fps:g}/s): {rate['sent_bps']:,.0f} bit/s"
                + (f" against a budget of {budget:,.0f} bit/s" if budget else "")
            )
    return 1 if errors else 0


def stream_rate(
    sent: int, faces: int, send_fps: float | None, budget_bps: float | None
) -> dict[str, Any]:
    """Face bytes on the wire per second of video (records and stream headers, not gRPC
    framing): what ``--budget-bps`` bounds."""
    seconds = faces / send_fps if send_fps and faces else None
    return {
        "faces": faces,
        "sent_bytes": sent,
        "fps": send_fps,
        "seconds": seconds,
        "sent_bps": 8.0 * sent / seconds if seconds else None,
        "budget_bps": budget_bps,
    }
