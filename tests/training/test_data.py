"""Dataset loaders, splits and augmentation on tiny generated fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.classifier import EXPRESSIONS
from core.preprocess import face_to_tensor, tensor_to_uint8
from training.batching import MemoryLoader, augment_batch
from training.data import FaceDataset, load_dataset, split_train_val
from training.eval import to_faces

RNG = np.random.default_rng(0)


def _faces(n: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, 48, 48), dtype=np.uint8)


def _npz(path: Path, n_train: int = 10, n_test: int = 4) -> Path:
    n = n_train + n_test
    labels = np.arange(n) % 7
    np.savez(
        path,
        images=_faces(n),
        labels=labels,
        split=np.array(["Training"] * n_train + ["PublicTest"] * n_test),
        ferplus_label=np.where(np.arange(n) % 3 == 0, -1, labels),
    )
    return path


def _csv(path: Path, rows: list[tuple[int, np.ndarray, str]]) -> Path:
    lines = ["emotion,pixels,Usage"]
    lines += [f"{e},{' '.join(map(str, px.ravel()))},{u}" for e, px, u in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_npz_splits_and_ferplus(tmp_path: Path) -> None:
    p = _npz(tmp_path / "d.npz")
    x, y = load_dataset(p, "Training")
    assert x.shape == (10, 48, 48) and x.dtype == np.uint8 and y.dtype == np.int64
    xt, _ = load_dataset(p, "PublicTest")
    assert len(xt) == 4
    xf, yf = load_dataset(p, "Training", label_source="ferplus")
    assert len(xf) == 6 and (yf >= 0).all()  # rows 0, 3, 6, 9 have no FER+ label


def test_val_suffix_is_the_trainers_held_out_part(tmp_path: Path) -> None:
    p = _npz(tmp_path / "d.npz", n_train=70)
    x, y = load_dataset(p, "Training")
    xv, yv = load_dataset(p, "Training:val")
    _, va = split_train_val(y)  # what training/runner.py validates on (shipped defaults)
    assert len(xv) == 7 and (xv == x[va]).all() and (yv == y[va]).all()
    assert sorted(yv.tolist()) == list(range(7))  # stratified: one face of each class
    with pytest.raises(ValueError, match="split"):
        load_dataset(p, "Nope:val")


def test_npz_errors(tmp_path: Path) -> None:
    p = _npz(tmp_path / "d.npz")
    with pytest.raises(ValueError, match="empty"):
        load_dataset(p, "PrivateTest")
    with pytest.raises(ValueError, match="not found"):
        load_dataset(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", images=_faces(2))
    with pytest.raises(ValueError, match="lacks keys"):
        load_dataset(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="label_source"):
        load_dataset(p, label_source="affectnet")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported"):
        load_dataset(tmp_path / "d.txt")


def test_every_source_goes_through_the_client_preparation(tmp_path: Path) -> None:
    # A 64x64 archive is resized like an image folder of the same faces and like the client
    # (core.preprocess.face_to_tensor), instead of being refused.
    big = RNG.integers(0, 256, (3, 64, 64), dtype=np.uint8)
    labels = np.array([0, 3, 6])
    np.savez(tmp_path / "big.npz", images=big, labels=labels, split=np.array(["Training"] * 3))
    x_npz, y_npz = load_dataset(tmp_path / "big.npz", "Training")
    for i, (face, label) in enumerate(zip(big, labels, strict=True)):
        folder = tmp_path / "tree" / "train" / EXPRESSIONS[label]
        folder.mkdir(parents=True)
        Image.fromarray(face).save(folder / f"{i}.png")
    x_dir, y_dir = load_dataset(tmp_path / "tree", "Training")
    client = np.stack([tensor_to_uint8(face_to_tensor(face)) for face in big])
    assert x_npz.shape == (3, 48, 48) and x_npz.dtype == np.uint8
    assert np.array_equal(x_npz, client) and np.array_equal(x_dir, client)
    assert list(y_npz) == list(y_dir) == [0, 3, 6]
    assert np.array_equal(to_faces(big), client)  # what `fercomp eval` feeds the models


def test_csv(tmp_path: Path) -> None:
    faces = _faces(3)
    p = _csv(
        tmp_path / "fer2013.csv",
        [(3, faces[0], "Training"), (5, faces[1], "PublicTest"), (0, faces[2], "Training")],
    )
    x, y = load_dataset(p, "Training")
    assert np.array_equal(x, faces[[0, 2]]) and y.tolist() == [3, 0]
    with pytest.raises(ValueError, match=r"FER\+"):
        load_dataset(p, label_source="ferplus")
    with pytest.raises(ValueError, match="empty"):
        load_dataset(p, "PrivateTest")


def test_csv_errors(tmp_path: Path) -> None:
    bad = tmp_path / "cols.csv"
    bad.write_text("label,pixels\n1,0 0\n")
    with pytest.raises(ValueError, match="expected columns"):
        load_dataset(bad)
    short = _csv(tmp_path / "short.csv", [(1, np.zeros(100, np.uint8), "Training")])
    with pytest.raises(ValueError, match="100 pixels, expected 2304"):
        load_dataset(short)


def test_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    for split, cls, size in (("train", "Happy", 48), ("train", "sad", 96), ("test", "fear", 64)):
        d = root / split / cls
        d.mkdir(parents=True)
        Image.fromarray(RNG.integers(0, 256, (size, size), dtype=np.uint8)).save(d / "a.png")
        Image.fromarray(RNG.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / "b.jpg")
    x, y = load_dataset(root, "Training")
    assert x.shape == (4, 48, 48) and sorted(y.tolist()) == [3, 3, 4, 4]
    _, yt = load_dataset(root, "PublicTest")
    assert yt.tolist() == [2, 2]
    (root / "train" / "contempt").mkdir()
    with pytest.raises(ValueError, match="unknown class folder 'contempt'"):
        load_dataset(root, "Training")
    with pytest.raises(ValueError, match="no folder for split"):
        load_dataset(root, "PrivateTest")
    empty = tmp_path / "empty"
    (empty / "train" / "angry").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty"):
        load_dataset(empty, "Training")


def test_split_train_val_stratified_and_deterministic() -> None:
    labels = np.repeat(np.arange(7), [50, 5, 40, 90, 60, 30, 60])
    tr, va = split_train_val(labels, 0.1, seed=1)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    assert set(labels[va].tolist()) == set(range(7))  # rare class 1 is represented
    tr2, va2 = split_train_val(labels, 0.1, seed=1)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    _, va3 = split_train_val(labels, 0.1, seed=2)
    assert not np.array_equal(va, va3)
    tr4, va4 = split_train_val(100, 0.2, seed=0)
    assert len(va4) == 20 and len(tr4) == 80
    with pytest.raises(ValueError):
        split_train_val(10, 1.0)


def test_face_dataset_augments_in_range() -> None:
    ds = FaceDataset(_faces(4), np.arange(4), augment=True)
    x, y = ds[1]
    assert x.shape == (1, 48, 48) and x.dtype == torch.float32 and int(y) == 1
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    plain = FaceDataset(_faces(2), np.arange(2))[0][0]
    assert plain.shape == (1, 48, 48)


def test_memory_loader_sharding_and_resume() -> None:
    images, labels = _faces(20), np.arange(20)
    full = MemoryLoader(images, labels, 4, torch.device("cpu"), seed=3)
    full.set_epoch(2)
    batches = [y.tolist() for _, y in full]
    assert len(batches) == 5 and sorted(i for b in batches for i in b) == list(range(20))
    assert [y.tolist() for _, y in full.iterate(3)] == batches[3:]  # resume mid-epoch
    ranks = [
        MemoryLoader(images, labels, 4, torch.device("cpu"), seed=3, rank=r, world=2)
        for r in (0, 1)
    ]
    seen = []
    for ld in ranks:
        ld.set_epoch(2)
        seen += [i for _, y in ld for i in y.tolist()]
    assert sorted(seen) == list(range(20))
    val = MemoryLoader(
        images[:7],
        labels[:7],
        4,
        torch.device("cpu"),
        shuffle=False,
        drop_last=False,
        rank=1,
        world=2,
    )
    assert [y.tolist() for _, y in val] == [[1, 3], [5]]  # global batch 4 = 2 per rank


def test_augment_batch_shapes() -> None:
    x = torch.rand(8, 1, 48, 48)
    out = augment_batch(x)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    flip_only = augment_batch(x, max_shift=0, max_rotate_deg=0, scale=(1.0, 1.0))
    for a, b in zip(flip_only, x, strict=True):
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))


@pytest.mark.data
def test_real_npz_loads(fer_npz: Path) -> None:
    x, y = load_dataset(fer_npz, "PublicTest")
    assert x.shape == (3589, 48, 48) and y.min() >= 0 and y.max() <= 6


def _npz_with_votes(path: Path) -> Path:
    labels = np.array([0, 3, 6, 2])
    columns = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
               "contempt", "unknown", "NF"]  # fmt: skip
    votes = np.zeros((4, 10), np.int16)
    votes[0, [4, 0]] = [6, 4]  # angry face: 6 anger, 4 neutral
    votes[1, 1] = 10  # happy, unanimous
    votes[2, [7, 8]] = [5, 5]  # only contempt/unknown: no FER2013 class voted
    votes[3, [6, 2, 9]] = [5, 3, 2]  # fear 5, surprise 3, NF 2 -> renormalised over 8 votes
    np.savez(
        path,
        images=_faces(4),
        labels=labels,
        split=np.array(["Training"] * 4),
        ferplus_votes=votes,
        ferplus_columns=np.array(columns),
    )
    return path


def test_ferplus_soft_targets_mix_votes_into_the_fer2013_label(tmp_path: Path) -> None:
    from training.data import ferplus_soft_targets

    p = _npz_with_votes(tmp_path / "v.npz")
    _, labels = load_dataset(p, "Training")
    t = ferplus_soft_targets(p, "Training", labels, 0.4)
    assert t.shape == (4, 7) and t.dtype == np.float32
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
    names = ("angry", "neutral", "happy", "fear", "surprise")
    angry, neutral, happy, fear, surprise = (EXPRESSIONS.index(n) for n in names)
    np.testing.assert_allclose(t[0, [angry, neutral]], [0.6 + 0.4 * 0.6, 0.4 * 0.4], rtol=1e-6)
    assert t[1, happy] == pytest.approx(1.0)
    assert t[2, neutral] == pytest.approx(1.0)  # no usable vote: its one-hot label
    np.testing.assert_allclose(t[3, [fear, surprise]], [0.6 + 0.4 * 5 / 8, 0.4 * 3 / 8], rtol=1e-6)
    hard = ferplus_soft_targets(p, "Training", labels, 0.0)
    assert np.array_equal(hard.argmax(1), [0, 3, 6, 2])


def test_ferplus_soft_targets_need_the_archive_votes(tmp_path: Path) -> None:
    from training.data import ferplus_soft_targets

    plain = _npz(tmp_path / "d.npz")
    with pytest.raises(ValueError, match="no FER\\+ votes"):
        ferplus_soft_targets(plain, "Training", load_dataset(plain)[1], 0.4)
    voted = _npz_with_votes(tmp_path / "v.npz")
    with pytest.raises(ValueError, match="alpha"):
        ferplus_soft_targets(voted, "Training", load_dataset(voted)[1], 1.5)


def test_loaders_keep_soft_targets_as_float_distributions() -> None:
    targets = np.full((8, 7), 1 / 7, np.float32)
    loader = MemoryLoader(_faces(8), targets, 4, torch.device("cpu"), shuffle=False)
    _, y = next(iter(loader.iterate()))
    assert y.dtype == torch.float32 and y.shape == (4, 7)
    _, y1 = FaceDataset(_faces(8), targets)[0]
    assert y1.dtype == torch.float32 and y1.shape == (7,)
