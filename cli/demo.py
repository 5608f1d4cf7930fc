"""The main job on embedded defaults (`make demo`): a local server with the bundled models, the
edge client classifying a few faces, predictions and bandwidth printed, the server stopped.

The faces come from a dependency (matplotlib's sample photo of Grace Hopper) plus simple
variations of it (mirror, darker, rotated, a tighter crop): no dataset is shipped or read.
"""

from __future__ import annotations

import json
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps


def photo_variants(im: Image.Image) -> dict[str, Image.Image]:
    """The demo's five faces from one RGB photo: itself, mirrored, darker, rotated, tighter."""
    w, h = im.size
    return {
        "hopper": im,
        "hopper_mirror": ImageOps.mirror(im),
        "hopper_dark": ImageEnhance.Brightness(im).enhance(0.6),
        "hopper_rotated": im.rotate(8, resample=Image.Resampling.BICUBIC),
        "hopper_tight": im.crop((w // 6, h // 10, w - w // 6, h - h // 4)),
    }


def jittered_crops(photo: Image.Image, n: int, side: int = 160, seed: int = 0) -> list[Image.Image]:
    """``n`` square crops of the photo's face region, jittered in position and scale and
    resized to ``side``: a synthetic video (the client tests and benchmarks.face_detectors)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        dx, dy = (int(v) for v in rng.integers(-20, 21, 2))
        s = int(rng.integers(300, 361))
        x0, y0 = 110 + dx - (s - 311) // 2, 60 + dy - (s - 311) // 2
        out.append(photo.crop((x0 - 40, y0 - 40, x0 + s + 40, y0 + s + 40)).resize((side, side)))
    return out


def demo_faces(folder: Path) -> list[Path]:
    import matplotlib

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    paths = []
    for name, img in photo_variants(Image.open(photo).convert("RGB")).items():
        # PNG: lossless, so hopper_mirror is the exact mirror of hopper (a JPEG re-save would
        # move its pixels by a few grey levels: another photo, not its mirror).
        paths.append(folder / f"{name}.png")
        img.save(paths[-1])
    return paths


#: The budgeted line: below the default codec's ~250 B, so the encoder picks a cheaper point.
DEMO_TARGET_BYTES = 120


def metrics_summary(exposition: str) -> list[str]:
    """A few lines of what the server's counters say (requests, bandwidth, accuracy): what a
    Prometheus dashboard would show, not the raw exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))

    def total(name: str, **match: str) -> float:
        return sum(
            v for labels, v in samples.get(name, [])
            if all(labels.get(k) == want for k, want in match.items())
        )  # fmt: skip

    requests = total("fercomp_requests_total")
    ok = total("fercomp_requests_total", status="ok")
    faces = total("fercomp_bytes_per_face_count")
    received = total("fercomp_bytes_per_face_sum")
    labelled, correct = total("fercomp_labelled_total"), total("fercomp_correct_total")
    by_expression = sorted(
        (
            (labels.get("expression", "?"), v)
            for labels, v in samples.get("fercomp_predictions_total", [])
            if v
        ),
        key=lambda kv: -kv[1],
    )
    lines = [
        f"requests: {requests:.0f} ({ok:.0f} ok)",
        f"bandwidth: {received:.0f} bytes for {faces:.0f} faces"
        + (f" ({received / faces:.0f} B/face)" if faces else ""),
        "accuracy: "
        + (f"{correct:.0f}/{labelled:.0f} labelled faces correct" if labelled
           else "no labelled faces yet (send a label with a face to measure it)"),
    ]  # fmt: skip
    if by_expression:
        lines.append("predictions: " + ", ".join(f"{k} {v:.0f}" for k, v in by_expression))
    return lines


def main() -> int:
    from cli.main import main as fercomp
    from cli.main import quiet_known_warnings

    quiet_known_warnings()
    from service.app import Server
    from service.settings import Settings

    with tempfile.TemporaryDirectory(prefix="fercomp-demo-") as tmp:
        tmp_path = Path(tmp)
        settings = Settings(
            host="127.0.0.1",
            grpc_port=0,
            http_port=0,
            db_path=tmp_path / "predictions.sqlite3",
            admin_auth_disabled=True,  # loopback only, nothing to protect in a demo
            log_json=False,
            log_level="WARNING",
        )
        server = Server(settings)
        ports = server.start()
        print(f"server: gRPC 127.0.0.1:{ports.grpc}, REST http://127.0.0.1:{ports.http}")
        try:
            http = f"http://127.0.0.1:{ports.http}"
            with urllib.request.urlopen(f"{http}/v1/models", timeout=10) as r:
                models = json.load(r)["models"]
            active = [f"{m['kind']} {m['name']}/{m['version']}" for m in models if m["active"]]
            print("active models:", ", ".join(active))
            faces = demo_faces(tmp_path)
            print(f"\nclassifying {len(faces)} faces (face detection on) ...")
            rc = fercomp(
                ["classify", *map(str, faces), "--server", f"127.0.0.1:{ports.grpc}",
                 "--detect-faces"]
            )  # fmt: skip
            print(f"\nthe same photo under a {DEMO_TARGET_BYTES}-byte budget per face:")
            rc |= fercomp(
                ["classify", str(faces[0]), "--server", f"127.0.0.1:{ports.grpc}",
                 "--detect-faces", "--target-bytes", str(DEMO_TARGET_BYTES)]
            )  # fmt: skip
            with urllib.request.urlopen(f"{http}/metrics", timeout=10) as r:
                metrics = r.read().decode()
            print("\nwhat Prometheus sees (GET /metrics, summarised):")
            for line in metrics_summary(metrics):
                print("  " + line)
        finally:
            server.stop(grace=5)
            print("server stopped")
    return rc


if __name__ == "__main__":
    sys.exit(main())
