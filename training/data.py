"""FER datasets: loaders for the project archive, the Kaggle CSV and image-folder trees.

Every loader returns ``(images, labels)``: ``uint8 [N, 48, 48]`` and ``int64 [N]`` in the
FER2013 class order (``core.classifier.EXPRESSIONS``). Keeping the raw uint8 array (28k faces
are only 66 MB) lets trainers hold the whole set on the GPU and augment batches there, which is
much faster than a per-sample DataLoader for images this small.

Supported sources (``load_dataset`` dispatches on the path):
- ``*.npz``: the project archive (keys ``images``, ``labels``, ``split``, optional
  ``ferplus_label``; see ../shared/data/README.md).
- ``*.csv``: Kaggle's ``fer2013.csv`` (columns ``emotion``, ``pixels``, ``Usage``).
- a directory ``<root>/<split>/<class>/*.png|jpg`` with class folders named after
  ``EXPRESSIONS`` (case-insensitive); images of any size are resized like at inference time.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from core.classifier import EXPRESSIONS
from core.preprocess import IMAGE_SUFFIXES, face_to_tensor, tensor_to_uint8

SIDE = 48
LABEL_SOURCES = ("fer2013", "ferplus")
#: Folder names accepted for each official split in image-folder trees (case-insensitive).
FOLDER_SPLITS = {
    "training": ("training", "train"),
    "publictest": ("publictest", "test", "val", "valid", "validation"),
    "privatetest": ("privatetest",),
}

Arrays = tuple[np.ndarray, np.ndarray]


#: ``fercomp eval --split Training:val``: the trainers' validation faces (see ``load_dataset``).
VAL_SUFFIX = ":val"


def load_dataset(
    path: str | Path, split: str = "Training", label_source: str = "fer2013"
) -> Arrays:
    """Load one split from an .npz archive, a Kaggle .csv or an image-folder tree.

    ``SPLIT:val`` is the held-out part of ``SPLIT`` the trainers validate on (``split_train_val``
    with the shipped configs' ``val_fraction = 0.1``, ``seed = 0``; a run's ``limit_val`` takes
    its first faces), so a run is selected on faces it did not fit and the test split is only
    reported: ``fercomp eval --split Training:val``. A classifier given a final fit on all of
    Training (``fer-resnet18/13``) has seen them, and so have those fine-tuned from it: compare
    such models with each other there, not their absolute accuracy."""
    if split.endswith(VAL_SUFFIX):
        images, labels = load_dataset(path, split.removesuffix(VAL_SUFFIX), label_source)
        _, va = split_train_val(labels)
        return images[va], labels[va]
    path = Path(path)
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
    if not path.exists():
        raise ValueError(f"dataset not found: {path}")
    if path.is_dir():
        if label_source != "fer2013":
            raise ValueError("image folders carry only their folder labels: use fer2013 labels")
        return load_folder(path, split)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, split, label_source)
    if suffix == ".csv":
        if label_source != "fer2013":
            raise ValueError("fer2013.csv has no FER+ labels: use label_source='fer2013'")
        return load_csv(path, split)
    raise ValueError(f"unsupported dataset {path}: expected a .npz, a .csv or a directory")


def prepare_faces(images: np.ndarray | Sequence[Any]) -> np.ndarray:
    """Any face images -> uint8 [N, 48, 48] through the client's preparation
    (``core.preprocess.face_to_tensor``), so every data source is resized and converted the way
    faces are at inference time. Arrays already in that form pass through unchanged."""
    if (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.shape[1:]
        == (
            SIDE,
            SIDE,
        )
    ):
        return np.ascontiguousarray(images)
    return np.stack([tensor_to_uint8(face_to_tensor(im)) for im in images])


def _check(images: np.ndarray, labels: np.ndarray, where: str, split: str) -> Arrays:
    if len(images) == 0:
        raise ValueError(f"split {split!r} of {where} is empty")
    if images.ndim not in (3, 4):
        raise ValueError(f"{where}: expected images [N, H, W] or [N, H, W, C], got {images.shape}")
    images = prepare_faces(images)
    bad = (labels < 0) | (labels >= len(EXPRESSIONS))
    if bad.any():
        raise ValueError(f"{where}: {int(bad.sum())} labels outside 0..{len(EXPRESSIONS) - 1}")
    return np.ascontiguousarray(images, dtype=np.uint8), labels.astype(np.int64)


def load_npz(path: str | Path, split: str = "Training", label_source: str = "fer2013") -> Arrays:
    """The project archive; ``label_source="ferplus"`` drops faces without a FER+ label."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"dataset not found: {path}")
    with np.load(path, allow_pickle=False) as d:
        missing = {"images", "labels", "split"} - set(d.files)
        if label_source == "ferplus" and "ferplus_label" not in d.files:
            missing.add("ferplus_label")
        if missing:
            raise ValueError(f"{path} lacks keys {sorted(missing)} (has {sorted(d.files)})")
        splits = d["split"].astype(str)
        sel = splits == split
        if not sel.any():
            raise ValueError(
                f"split {split!r} of {path} is empty (available: {sorted(set(splits.tolist()))})"
            )
        images = d["images"][sel]
        labels = d["ferplus_label" if label_source == "ferplus" else "labels"][sel]
    if label_source == "ferplus":
        keep = labels >= 0
        images, labels = images[keep], labels[keep]
    return _check(images, labels, str(path), split)


#: FER+ vote columns (``ferplus_columns`` of the archive) in the FER2013 class order; contempt,
#: unknown and NF have no FER2013 class and are left out.
FERPLUS_COLUMN_OF = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}


def ferplus_soft_targets(
    path: str | Path, split: str, labels: np.ndarray, alpha: float
) -> np.ndarray:
    """``float32 [N, 7]`` targets ``(1 - alpha) * one-hot(label) + alpha * FER+ votes``.

    ``labels`` are the split's FER2013 labels as ``load_npz(path, split)`` returned them (checked,
    same row order); only the votes are read here. The FER+ part is the
    share of the ten crowd votes given to each of the seven FER2013 classes, renormalised over
    them; a face with no vote among the seven keeps its one-hot target. Why: FER+ says how
    ambiguous a face is (its FER2013 label agrees with the FER+ majority on only 66 % of faces),
    an informed replacement for uniform label smoothing (Barsoum et al. 2016).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"FER+ votes come with the project archive (.npz), not {path.name}")
    with np.load(path, allow_pickle=False) as d:
        if "ferplus_votes" not in d.files or "ferplus_columns" not in d.files:
            raise ValueError(f"{path} has no FER+ votes (keys ferplus_votes, ferplus_columns)")
        sel = d["split"].astype(str) == split
        votes = d["ferplus_votes"][sel].astype(np.float64)
        columns = [str(c) for c in d["ferplus_columns"]]
    if len(votes) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(votes)} FER+ vote rows in split {split!r}")
    cols = [columns.index(FERPLUS_COLUMN_OF[name]) for name in EXPRESSIONS]
    votes = votes[:, cols]
    total = votes.sum(1, keepdims=True)
    onehot = np.eye(len(EXPRESSIONS))[labels]
    crowd = np.where(total > 0, votes / np.maximum(total, 1), onehot)
    return ((1.0 - alpha) * onehot + alpha * crowd).astype(np.float32)


def load_csv(path: str | Path, split: str = "Training") -> Arrays:
    """Kaggle ``fer2013.csv``: ``pixels`` holds 2304 space-separated grey levels per row."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"dataset not found: {path}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    images, labels = [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = {c.strip() for c in reader.fieldnames or ()}
        if not {"emotion", "pixels", "Usage"} <= cols:
            raise ValueError(f"{path}: expected columns emotion, pixels, Usage; got {sorted(cols)}")
        for lineno, row in enumerate(reader, start=2):
            row = {k.strip(): v for k, v in row.items() if k is not None}
            if row["Usage"].strip() != split:
                continue
            px = np.array(row["pixels"].split(), dtype=np.int64)
            if px.size != SIDE * SIDE:
                raise ValueError(
                    f"{path}:{lineno}: {px.size} pixels, expected {SIDE * SIDE} ({SIDE}x{SIDE})"
                )
            if px.min() < 0 or px.max() > 255:
                raise ValueError(f"{path}:{lineno}: pixel values outside 0..255")
            images.append(px.astype(np.uint8).reshape(SIDE, SIDE))
            labels.append(int(row["emotion"]))
    if not images:
        raise ValueError(f"split {split!r} of {path} is empty")
    return _check(np.stack(images), np.array(labels), str(path), split)


def _find_split_dir(root: Path, split: str) -> Path:
    wanted = FOLDER_SPLITS.get(split.lower(), (split.lower(),))
    dirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    for name in wanted:
        if name in dirs:
            return dirs[name]
    raise ValueError(
        f"{root}: no folder for split {split!r} (looked for {list(wanted)}, found {sorted(dirs)})"
    )


def load_folder(root: str | Path, split: str = "Training") -> Arrays:
    """``<root>/<split>/<class>/*.png|jpg``; split folders may be named train/test too."""
    root = Path(root)
    split_dir = _find_split_dir(root, split)
    index = {name: i for i, name in enumerate(EXPRESSIONS)}
    images, labels = [], []
    for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
        label = index.get(class_dir.name.lower())
        if label is None:
            raise ValueError(
                f"{class_dir}: unknown class folder {class_dir.name!r} "
                f"(expected one of {', '.join(EXPRESSIONS)})"
            )
        for f in sorted(class_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                images.append(prepare_faces([f])[0])
                labels.append(label)
    if not images:
        raise ValueError(f"split {split!r} of {root} is empty (no images in {split_dir})")
    return _check(np.stack(images), np.array(labels), str(root), split)


def split_train_val(
    labels: np.ndarray | int, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic held-out split -> (train indices, val indices), sorted.

    Given labels, the split is stratified (each class keeps ``val_fraction`` of its faces, at
    least one when it has two or more), so rare classes like *disgust* appear in validation.
    Given just ``n``, it is a plain seeded permutation.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    if isinstance(labels, int | np.integer):
        groups = [np.arange(int(labels))]
    else:
        labels = np.asarray(labels)
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    val: list[np.ndarray] = []
    for g in groups:
        k = round(len(g) * val_fraction)
        if val_fraction > 0 and k == 0 and len(g) >= 2:
            k = 1
        val.append(rng.permutation(g)[:k])
    n = sum(len(g) for g in groups)
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


def train_transform() -> torch.nn.Module:
    """Per-sample augmentation for the DataLoader path (tensors [1, 48, 48] in [0, 1])."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomResizedCrop(SIDE, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomRotation(10),
        ]
    )


class FaceDataset(Dataset[tuple[Tensor, Tensor]]):
    """Faces as float tensors [1, 48, 48] in [0, 1] with int64 labels, optionally augmented."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool = False) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        # int64 class indices, or float [N, 7] target distributions (ferplus_soft)
        labels = np.asarray(labels)
        soft = np.issubdtype(labels.dtype, np.floating)
        self.labels = torch.from_numpy(labels.astype(np.float32 if soft else np.int64))
        self.transform = train_transform() if augment else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.images[i].unsqueeze(0).float().div_(255.0)
        if self.transform is not None:
            x = self.transform(x).clamp_(0.0, 1.0)
        return x, self.labels[i]
