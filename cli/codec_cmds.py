"""`fercomp encode | decode | info | realign | export-edge`: the offline codec round trip, and
re-exports.

`encode` is an edge command: it encodes from the codec's edge bundle (ONNX Runtime, no torch;
client.edge_codec) and falls back to torch only for an artifact without one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.face_codec import FaceCodec


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("encode", help="encode face images to .frc bitstreams")
    p.add_argument("images", nargs="+", type=Path, help="image files or folders")
    p.add_argument("-o", "--out", type=Path, required=True, help="output .frc file or folder")
    p.add_argument("--codec", type=Path, help="codec artifact folder (default: bundled)")
    p.add_argument("--detect-faces", action="store_true", help="crop the largest face first")
    p.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    p.set_defaults(func=_encode)

    p = sub.add_parser("decode", help="decode .frc bitstreams to PNG")
    p.add_argument("files", nargs="+", type=Path, help=".frc files or folders")
    p.add_argument("-o", "--out", type=Path, required=True, help="output .png file or folder")
    p.add_argument(
        "--codec", type=Path, action="append", help="codec artifact folder(s) (default: bundled)"
    )
    p.set_defaults(func=_decode)

    p = sub.add_parser(
        "realign",
        help="re-export a codec artifact at another pixel alignment (same weights, new id)",
        description="Latent alignment (docs/CODEC.md): --align 4 pads a 48x48 face to 48x48 "
        "(y 3x3) instead of 64x64. Writes EXPORT_DIR/NAME/VERSION.",
    )
    p.add_argument("codec", type=Path, help="source codec artifact folder")
    p.add_argument("--align", type=int, required=True, help="align_log2 (4..8; 6 = default)")
    p.add_argument("--version", required=True, help="version of the new artifact")
    p.add_argument("--export-dir", type=Path, default=Path("models"))
    p.add_argument("--name", help="artifact name (default: the source's)")
    p.set_defaults(func=_realign)

    p = sub.add_parser(
        "export-edge",
        help="write a codec artifact's edge/ bundle (ONNX analysis + entropy tables), checked",
        description="For each codec artifact, write ARTIFACT/edge/: analysis.onnx (g_a + h_a), "
        "entropy.safetensors (v2 tables + float64 h_s), edge.json (checksums, the check against "
        "torch). The torch-free client encodes from it (docs/CLIENT.md).",
    )
    p.add_argument("codecs", nargs="*", help="codec artifact folders or NAME/VERSION refs")
    p.add_argument(
        "--all-release", action="store_true", help="every codec of the repository's release.json"
    )
    p.add_argument("--models", type=Path, help="model repository (default: bundled models)")
    p.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data/fer2013.npz"),
        help="FER2013 .npz whose PublicTest faces the check encodes (default %(default)s; "
        "smooth random images when absent)",
    )
    p.add_argument("--check-faces", type=int, default=0, metavar="N", help="first N faces (0: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per codec")
    p.set_defaults(func=_export_edge)

    p = sub.add_parser("info", help="print the header of .frc files")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_info)


def expand(paths: list[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Files as given, folders expanded recursively to files with one of ``suffixes``."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in suffixes))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(2, "No such file", str(p))
    if not out:
        raise ValueError(f"no input files with suffix {'/'.join(suffixes)} in {paths}")
    return out


def _outputs(inputs: list[Path], out: Path, suffix: str) -> list[Path]:
    if len(inputs) == 1 and out.suffix.lower() == suffix:
        out.parent.mkdir(parents=True, exist_ok=True)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    names = [p.stem for p in inputs]
    if len(set(names)) != len(names):  # same stem in different folders: keep them apart
        names = [f"{i:05d}_{n}" for i, n in enumerate(names)]
    return [out / f"{n}{suffix}" for n in names]


def default_codec_dirs() -> list[Path]:
    from core.manifest import ModelRepository, bundled_models_dir

    repo = ModelRepository(bundled_models_dir())
    try:
        default = repo.path(repo.defaults()["codec"])
    except (ValueError, KeyError) as e:
        raise ValueError(f"no bundled codec ({e}); pass --codec ARTIFACT_DIR") from e
    others = [repo.path(m.ref) for m in repo.list("codec")]
    return [default, *[d for d in others if d != default]]


def _encode(args: argparse.Namespace) -> int:
    import numpy as np

    from client.edge_codec import EdgeCodec, load_encoder_codec
    from client.encoder import OperatingPoint
    from core.face_image import IMAGE_SUFFIXES, InputSpec, face_to_array

    inputs = expand(args.images, IMAGE_SUFFIXES)
    codec, manifest = load_encoder_codec(args.codec or default_codec_dirs()[0])
    point = OperatingPoint(codec, manifest)
    spec = InputSpec(**manifest.input)
    if args.detect_faces:
        from client.faces import prepare_face  # optional dependency (OpenCV)

        faces = [prepare_face(p, detect=True, spec=spec).array for p in inputs]
    else:
        faces = [face_to_array(p, spec) for p in inputs]
    rows = []
    for src, dst, face in zip(inputs, _outputs(inputs, args.out, ".frc"), faces, strict=True):
        (payload,) = point.encode(np.asarray(face)[None])
        dst.write_bytes(payload)
        rows.append({"input": str(src), "output": str(dst), "bytes": len(payload)})
        if not args.json:
            print(f"{src} -> {dst} ({len(payload)} bytes)")
    total = sum(r["bytes"] for r in rows)
    engine = "onnxruntime" if isinstance(codec, EdgeCodec) else "torch"
    if args.json:
        summary = {
            "faces": len(rows),
            "bytes": total,
            "codec": manifest.ref,
            "codec_id": point.codec.codec_id_hex,
            "encoder": engine,
        }
        print(json.dumps({"files": rows, "summary": summary}, indent=2))
    else:
        print(
            f"{len(inputs)} face(s), {total} bytes, codec {manifest.ref} "
            f"[{point.codec.codec_id_hex}] ({engine})"
        )
    return 0


def _decode(args: argparse.Namespace) -> int:
    from core import bitstream
    from core.artifacts import load_codec
    from core.preprocess import tensor_to_uint8

    files = expand(args.files, (".frc",))
    codecs: dict[bytes, FaceCodec] = {}
    for d in args.codec or default_codec_dirs():
        c, _ = load_codec(d)
        codecs[c.codec_id] = c
    from PIL import Image

    for src, dst in zip(files, _outputs(files, args.out, ".png"), strict=True):
        data = src.read_bytes()
        try:
            header = bitstream.read_header(data)
            codec = codecs.get(header.codec_id)
            if codec is None:
                known = ", ".join(k.hex() for k in codecs)
                raise bitstream.UnknownCodec(
                    f"codec {header.codec_id_hex} is not loaded (have: {known})"
                )
            (img,) = codec.decode([data])
        except bitstream.BitstreamError as e:
            raise type(e)(f"{src}: {e}") from e
        Image.fromarray(tensor_to_uint8(img)).save(dst)
        print(f"{src} -> {dst} ({header.width}x{header.height})")
    return 0


def _realign(args: argparse.Namespace) -> int:
    from training.export import realign_codec

    m = realign_codec(args.codec, args.export_dir, args.version, args.align, args.name)
    where = args.export_dir / m.name / m.version
    print(f"wrote {where} (codec id {m.codec_id}, align_log2 {args.align})")
    return 0


def export_edge_dirs(args: argparse.Namespace) -> list[Path]:
    """The codec artifact folders ``export-edge`` works on, each once, in order."""
    from core.manifest import ModelRepository, bundled_models_dir, read_manifest
    from core.release import listed_refs

    repo = ModelRepository(args.models or bundled_models_dir())
    refs = list(args.codecs)
    if args.all_release:
        refs += [r for r in listed_refs(repo.root) if read_manifest(repo.path(r)).kind == "codec"]
    if not refs:
        raise ValueError("name codec artifacts (folders or NAME/VERSION) or pass --all-release")
    dirs: list[Path] = []
    for ref in refs:
        d = Path(ref) if (Path(ref) / "manifest.json").is_file() else repo.path(ref)
        if read_manifest(d).kind != "codec":
            raise ValueError(f"{ref} is not a codec artifact")
        if d.resolve() not in dirs:
            dirs.append(d.resolve())
    return dirs


def _export_edge(args: argparse.Namespace) -> int:
    from core.edge_export import check_faces, export_edge

    if args.check_faces < 0:
        raise ValueError("--check-faces must be >= 0")
    dirs = export_edge_dirs(args)
    faces, source = check_faces(args.data, args.check_faces)
    for d in dirs:
        info = export_edge(d, faces, source)
        c = info["check"]
        ref = f"{info['source']['name']}/{info['source']['version']}"
        size = sum(f["bytes"] for f in info["files"].values())
        if args.json:
            print(json.dumps({"ref": ref, "dir": str(d), "bytes": size, "check": c}), flush=True)
        else:
            print(
                f"{ref}: {d / 'edge'} ({size:,} B); {c['faces']} faces: max |dy| "
                f"{c['y_max_abs_diff']:.2e}, |dz| {c['z_max_abs_diff']:.2e}, symbols equal "
                f"{c['symbols_match_fraction']:.2%}, bytes edge/torch "
                f"{c['bytes_ratio_edge_to_torch']:.4f}, decode mismatches "
                f"{c['decode_mismatches']}",
                flush=True,
            )
    return 0


def _info(args: argparse.Namespace) -> int:
    from core import bitstream

    rows = []
    for f in expand(args.files, (".frc",)):
        data = f.read_bytes()
        c = bitstream.parse(data)
        h = c.header
        rows.append(
            {
                "file": str(f),
                "format_version": bitstream.FORMAT_VERSION,
                "codec_id": h.codec_id_hex,
                "channels": h.channels,
                "height": h.height,
                "width": h.width,
                "align_log2": h.align_log2,
                "padding": list(h.padding),
                "strings": [len(s) for s in c.strings],
                # the face codec's string layouts (docs/CODEC.md "One rANS string per face")
                "layout": {1: "merged (z, y)", 2: "y, z"}.get(len(c.strings), "other"),
                "total_bytes": len(data),
                "overhead_bytes": c.overhead_bytes,
                "bpp": round(8 * len(data) / (h.height * h.width), 4),
            }
        )
    if args.json:
        json.dump(rows if len(rows) > 1 else rows[0], sys.stdout, indent=2)
        print()
    else:
        for r in rows:
            print(" ".join(f"{k}={v}" for k, v in r.items()))
    return 0
