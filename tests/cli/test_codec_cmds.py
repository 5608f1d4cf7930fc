"""`fercomp encode/decode/info` round trip through a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main


@pytest.fixture()
def pngs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        arr = (rng.random((64, 64)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(d / f"face{i}.png")
    return d


def test_round_trip(pngs: Path, tmp_path: Path, model_repo: Path, capsys) -> None:
    codec = str(model_repo / "tiny-codec" / "1")
    assert main(["encode", str(pngs), "-o", str(tmp_path / "frc"), "--codec", codec]) == 0
    frcs = sorted((tmp_path / "frc").glob("*.frc"))
    assert [f.stem for f in frcs] == ["face0", "face1", "face2"]
    assert (
        main(["decode", str(tmp_path / "frc"), "-o", str(tmp_path / "png"), "--codec", codec]) == 0
    )
    out = Image.open(tmp_path / "png" / "face1.png")
    assert out.size == (48, 48) and out.mode == "L"
    capsys.readouterr()
    assert main(["info", str(frcs[0]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # one merged string (core/latent_coding.py): 15 bytes of container overhead
    assert info["height"] == 48 and info["overhead_bytes"] == 15 and info["total_bytes"] > 15
    assert len(info["strings"]) == 1 and info["layout"] == "merged (z, y)"


def test_single_file_output(pngs: Path, tmp_path: Path, model_repo: Path) -> None:
    codec = str(model_repo / "tiny-codec" / "1")
    out = tmp_path / "one.frc"
    assert main(["encode", str(pngs / "face0.png"), "-o", str(out), "--codec", codec]) == 0
    assert out.read_bytes()[:2] == b"FR"


@pytest.mark.parametrize(
    "payload, code",
    [
        (b"XX\x01", "bad_magic"),
        (b"FR", "truncated"),
        (b"FR\x09" + b"\x00" * 20, "unsupported_version"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, model_repo: Path, capsys, payload: bytes, code: str):
    bad = tmp_path / "bad.frc"
    bad.write_bytes(payload)
    rc = main(
        [
            "decode",
            str(bad),
            "-o",
            str(tmp_path / "o"),
            "--codec",
            str(model_repo / "tiny-codec" / "1"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"[{code}]" in err and "Traceback" not in err


def test_unknown_codec_and_missing_file(tmp_path: Path, model_repo: Path, pngs: Path, capsys):
    frc = tmp_path / "x.frc"
    main(
        [
            "encode",
            str(pngs / "face0.png"),
            "-o",
            str(frc),
            "--codec",
            str(model_repo / "tiny-codec" / "2"),
        ]
    )
    rc = main(
        [
            "decode",
            str(frc),
            "-o",
            str(tmp_path / "o"),
            "--codec",
            str(model_repo / "tiny-codec" / "1"),
        ]
    )
    assert rc == 2 and "[unknown_codec]" in capsys.readouterr().err
    rc = main(["info", str(tmp_path / "nope.frc")])
    assert rc == 2 and "no such file" in capsys.readouterr().err
