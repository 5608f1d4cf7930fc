"""Mirror-consistent end to end: the client flips each image into its canonical orientation
first, so a photo and its mirror send the same bitstream and get the same answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from cli.main import main
from client.encoder import EdgeEncoder
from client.faces import canonical_orientation, mirror_moment, prepare_face
from client.results import Prediction
from client.sdk import FerClient
from tests.client.conftest import hopper_frames, hopper_photo


def test_moment_is_exactly_antisymmetric() -> None:
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (3, 5), (48, 48), (61, 97), (1080, 1921)]:
        g = rng.integers(0, 256, shape, dtype=np.uint8)
        assert mirror_moment(g[:, ::-1]) == -mirror_moment(g)
    sym = rng.integers(0, 256, (10, 6), dtype=np.uint8)
    sym[:, 3:] = sym[:, :3][:, ::-1]
    assert mirror_moment(sym) == 0
    big = np.full((4320, 7680), 255, np.uint8)
    big[:, :100] = 0
    assert mirror_moment(big) == 255 * 4320 * sum(2 * x - 7679 for x in range(100, 7680))


@pytest.mark.parametrize("mode", ["L", "RGB", "bgr", "gray-float"])
def test_an_image_and_its_mirror_give_the_same_model_input(mode: str) -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(8, 90, 2))
        shape = (h, w) if mode in ("L", "gray-float") else (h, w, 3)
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        img: Any
        mirror: Any
        if mode in ("L", "RGB"):
            img = Image.fromarray(arr, mode=mode)
            mirror = ImageOps.mirror(img)
        elif mode == "bgr":
            img, mirror = arr, np.ascontiguousarray(arr[:, ::-1])
        else:
            img, mirror = arr / 255.0, np.ascontiguousarray(arr[:, ::-1]) / 255.0
        a = prepare_face(img, canonical=True)
        b = prepare_face(mirror, canonical=True)
        assert np.array_equal(a.array, b.array)
        assert a.mirrored != b.mirrored
        assert a.box == b.box == (0, 0, w, h)
        plain = prepare_face(img)
        assert np.array_equal(plain.array, a.array) != a.mirrored


def test_a_zero_moment_is_broken_by_the_bytes() -> None:
    g = np.array([[1, 0, 0, 0, 1], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0]], np.uint8)
    assert mirror_moment(g) == 0
    a, _, fa = canonical_orientation(Image.fromarray(g))
    b, _, fb = canonical_orientation(Image.fromarray(np.ascontiguousarray(g[:, ::-1])))
    assert fa != fb and a.tobytes() == b.tobytes()
    sym = np.array([[3, 1, 3], [0, 7, 0]], np.uint8)  # its own mirror: never flipped
    assert canonical_orientation(Image.fromarray(sym))[2] is False


def test_photo_and_mirror_detect_the_same_face_and_encode_the_same_bytes() -> None:
    photo = hopper_photo()
    mirror = ImageOps.mirror(photo)
    a = prepare_face(photo, detect=True, canonical=True)
    b = prepare_face(mirror, detect=True, canonical=True)
    assert a.detected and b.detected
    assert np.array_equal(a.array, b.array)
    # each box in the coordinates of the image given: the mirror of the other
    w = photo.width
    assert b.box == (w - a.box[0] - a.box[2], a.box[1], a.box[2], a.box[3])
    enc = EdgeEncoder.default()
    assert enc.pick(a.array).payload == enc.pick(b.array).payload
    # Without it the detector's box is mirror-consistent only up to rounding and the crops are
    # resampled differently: other pixels, another bitstream.
    pa, pb = prepare_face(photo, detect=True), prepare_face(mirror, detect=True)
    assert not np.array_equal(pa.array, pb.array[:, :, ::-1])


def test_same_answer_through_the_server(
    real_server: tuple[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, _ = real_server
    photo = hopper_photo()
    images = [photo, ImageOps.mirror(photo)]
    with FerClient(target) as client:
        a, b = client.classify_many(images, detect_faces=True)
        same_answer(a, b)
        assert a.face.mirrored != b.face.mirrored  # type: ignore[union-attr]
        # video frames and their mirrors, over a stream: the same bitstreams, the same answers
        frames = hopper_frames(6, seed=3)
        mirrored = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
        for f, m in zip(frames, mirrored, strict=True):
            assert client.encode(f, True)[1].payload == client.encode(m, True)[1].payload
        res = list(client.stream([*frames, *mirrored], detect_faces=True))
        for x, y in zip(res[:6], res[6:], strict=True):
            same_answer(x, y, stream=True)
    # The CLI does it by default; --no-canonical-orientation sends images as given.
    paths = []
    for name, im in zip(("photo", "mirror"), images, strict=True):
        paths.append(str(tmp_path / f"{name}.png"))
        im.save(paths[-1])
    assert main(["classify", *paths, "--server", target, "--json", "--detect-faces"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert rows[0]["expression"] == rows[1]["expression"]
    assert rows[0]["bytes_sent"] == rows[1]["bytes_sent"]
    assert rows[0]["face"]["box"][2] == rows[1]["face"]["box"][2]
    assert rows[0]["face"]["mirrored"] != rows[1]["face"]["mirrored"]
    argv = ["classify", *paths, "--server", target, "--json", "--detect-faces"]
    assert main([*argv, "--no-canonical-orientation"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert not rows[0]["face"]["mirrored"] and not rows[1]["face"]["mirrored"]
    p0, p1 = rows[0]["probabilities"], rows[1]["probabilities"]
    far = max(abs(p0[k] - p1[k]) for k in p0)
    assert far > 1e-3  # different bitstreams: other decoded faces, other probabilities


def test_publictest_faces_and_their_mirrors_agree(
    real_server: tuple[str, object], fer_npz: Path
) -> None:
    """The first 128 PublicTest faces (benchmarks/mirror_agreement.py does all 3,589)."""
    target, _ = real_server
    with np.load(fer_npz, allow_pickle=False) as z:
        faces = z["images"][np.flatnonzero(z["split"] == "PublicTest")[:128]]
    mirrors = [np.ascontiguousarray(f[:, ::-1]) for f in faces]
    with FerClient(target) as client:
        payloads = [client.encode(f)[1].payload for f in [*faces, *mirrors]]
        # One request at a time: every face is computed alone by the server, so the same
        # bitstream gets exactly the same probabilities (in batches of different sizes they
        # agree to the server's bf16 numerics, ~1e-3: same_answer).
        res = client.classify_many([*faces, *mirrors], concurrency=1)
    assert payloads[:128] == payloads[128:]
    for x, y in zip(res[:128], res[128:], strict=True):
        assert isinstance(x, Prediction) and isinstance(y, Prediction)
        assert x.probabilities == y.probabilities and x.bytes_sent == y.bytes_sent


def same_answer(a: object, b: object, stream: bool = False) -> None:
    """The same bitstream gets the same expression; the probabilities agree to the server's
    batch numerics (the same face in batches of other sizes; bf16 where the CPU has it: up to
    ~1e-3 apart). In a compact stream the first face also carries the stream header."""
    assert isinstance(a, Prediction) and isinstance(b, Prediction)
    assert a.expression == b.expression
    assert stream or a.bytes_sent == b.bytes_sent
    assert a.codec_version == b.codec_version
    for k, p in a.probabilities.items():
        assert b.probabilities[k] == pytest.approx(p, abs=5e-3)
