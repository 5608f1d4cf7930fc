"""What both ends of bitstream v2 must agree on, as plain numpy: entropy tables and hyper path.

A v2 face is entropy-coded with integer tables and Gaussian parameters that the encoder (the
edge, without torch) and the decoder (the server) must derive **bit for bit** alike, or the ANS
decoder silently desynchronises. The mechanism (docs/BITSTREAM.md, "Bit-exact by construction"):

* **Integer tables.** The symbol probabilities are CompressAI's own quantised CDFs (16-bit
  integers: one table per z channel, one per scale index of y), stored once per codec in
  ``entropy.safetensors`` and turned into probabilities by exact integer differences. Nothing
  about them is recomputed from floats at run time.
* **Quantised decisions from a float64 hyper path.** y's tables are chosen by a scale *index*
  and its symbols are centred on a mean snapped to a 1/256 grid. Both come from the
  hyper-synthesis ``h_s``, run here in float64 numpy on both ends (the same code: the edge's
  encoder and the server's decoder both call :func:`gaussian_params`). Two machines could only
  disagree if a float64 result fell within ~1e-12 of a grid or scale-table boundary.
* **z itself is exact**: ``z_hat = z_symbols + medians`` in float32 is one IEEE addition.

This module imports numpy and safetensors only: the torch-free edge client ships it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

F64 = NDArray[np.float64]
I32 = NDArray[np.int32]

#: Latent means are snapped to multiples of this before entropy coding (core.codec.MEAN_GRID).
MEAN_GRID = 1.0 / 256.0
#: ``h_s`` of mbt2018-mean: deconv(N, M), LeakyReLU, deconv(M, 3M/2), LeakyReLU, conv3x3(3M/2, 2M).
HS_LAYERS = ("h_s.0", "h_s.2", "h_s.4")
LEAKY_SLOPE = 0.01
TABLES_FILE = "entropy.safetensors"
TABLES_FORMAT = "fercomp-latent-tables/1"


@dataclass(frozen=True)
class SymbolTables:
    """CompressAI's quantised CDFs of one entropy model (one row per table).

    Row ``t`` holds ``lengths[t]`` CDF values; symbol values ``0 .. lengths[t] - 3`` are coded
    directly and ``lengths[t] - 2`` is the escape (the value is then sent raw), exactly as in
    CompressAI's rANS coder. ``offsets[t]`` is added to a decoded value to get the symbol.
    """

    cdfs: I32  # [T, max_len], zero padded
    lengths: I32  # [T]
    offsets: I32  # [T]

    def __post_init__(self) -> None:
        if self.cdfs.ndim != 2 or self.lengths.shape != self.offsets.shape:
            raise ValueError("symbol tables: cdfs [T, L], lengths [T], offsets [T] expected")
        if len(self.lengths) != self.cdfs.shape[0] or int(self.lengths.min()) < 3:
            raise ValueError("symbol tables: every table needs >= 3 CDF entries")
        if int(self.lengths.max()) > self.cdfs.shape[1]:
            raise ValueError("symbol tables: a length exceeds the table width")

    @property
    def escape(self) -> I32:
        """Per table, the value that announces a raw (escaped) symbol."""
        out: I32 = (self.lengths - 2).astype(np.int32)
        return out

    def probabilities(self, t: int) -> F64:
        """Table ``t`` as unnormalised probabilities (exact integer differences)."""
        n = int(self.lengths[t])
        out: F64 = np.diff(self.cdfs[t, :n].astype(np.int64)).astype(np.float64)
        return out

    def padded_probabilities(self) -> F64:
        """All tables as one [T, max_len - 1] array, zero past each table's end."""
        width = int(self.lengths.max()) - 1
        out = np.zeros((len(self.lengths), width), np.float64)
        for t in range(len(self.lengths)):
            p = self.probabilities(t)
            out[t, : len(p)] = p
        return out


@dataclass(frozen=True)
class LatentTables:
    """Everything a v2 encoder or decoder needs besides the big transforms g_a / g_s."""

    N: int
    M: int
    z: SymbolTables  # one table per z channel
    z_medians: NDArray[np.float32]  # [N]
    y: SymbolTables  # one table per scale index
    scale_table: F64  # [T_y], ascending
    hs_weights: tuple[F64, ...]  # h_s.0.weight, h_s.0.bias, h_s.2.weight, ... (float64)

    # -- geometry --------------------------------------------------------------------------
    def hyper_synthesis(self, z_hat: NDArray[Any], y_size: tuple[int, int]) -> tuple[F64, F64]:
        """(scales, means) of y [B, M, yH, yW] before any snapping: float64 ``h_s(z_hat)``."""
        x = np.ascontiguousarray(z_hat, dtype=np.float64)
        w0, b0, w1, b1, _, b2 = self.hs_weights
        x = _leaky(_deconv5s2(x, w0, b0))
        x = _leaky(_deconv5s2(x, w1, b1))
        rows, cols = min(y_size[0], x.shape[-2]), min(y_size[1], x.shape[-1])
        x = _conv3s1(x, self._conv_matrix, b2, rows, cols)
        return x[:, : self.M], x[:, self.M :]

    def gaussian_params(self, z_hat: NDArray[Any], y_size: tuple[int, int]) -> tuple[I32, F64]:
        """(scale indexes, snapped means) of y [B, M, yH, yW] from z_hat [B, N, zH, zW]."""
        scales, mu = self.hyper_synthesis(z_hat, y_size)
        # CompressAI's build_indexes: the count of table entries (but the last) below the scale.
        indexes = np.searchsorted(self.scale_table[:-1], scales, side="left").astype(np.int32)
        means: F64 = np.round(mu / MEAN_GRID) * MEAN_GRID
        return indexes, means

    def decision_margin(self, z_hat: NDArray[Any], y_size: tuple[int, int]) -> float:
        """How close, relative to the value, any float64 hyper output of this batch comes to a
        boundary that would flip a decision (a scale-table entry, or a half-step of the mean
        grid): the headroom over float64 round-off that makes two machines agree."""
        scales, mu = self.hyper_synthesis(z_hat, y_size)
        grid = mu / MEAN_GRID
        to_mean = np.abs(np.abs(grid - np.floor(grid)) - 0.5) * MEAN_GRID
        d_mean = to_mean / np.maximum(np.abs(mu), np.finfo(np.float64).tiny)
        to_scale = np.abs(scales[..., None] - self.scale_table[None, :-1])
        d_scale = to_scale / np.abs(scales[..., None])
        return float(min(d_mean.min(initial=np.inf), d_scale.min(initial=np.inf)))

    @cached_property
    def _conv_matrix(self) -> F64:
        """h_s's last (3x3) conv weight [Co, Ci, 3, 3] as the [(ki, kj, ci), Co] matrix its
        patches multiply: laid out once, not per call (same values, same products)."""
        w = self.hs_weights[4]
        out: F64 = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))
        return out

    # -- files -----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        tensors: dict[str, NDArray[Any]] = {
            "z.cdfs": self.z.cdfs,
            "z.lengths": self.z.lengths,
            "z.offsets": self.z.offsets,
            "z.medians": self.z_medians,
            "y.cdfs": self.y.cdfs,
            "y.lengths": self.y.lengths,
            "y.offsets": self.y.offsets,
            "y.scale_table": self.scale_table,
        }
        names = [f"{layer}.{p}" for layer in HS_LAYERS for p in ("weight", "bias")]
        tensors.update(zip(names, self.hs_weights, strict=True))
        meta = {"format": TABLES_FORMAT, "N": str(self.N), "M": str(self.M)}
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), meta)

    @classmethod
    def load(cls, path: Path) -> LatentTables:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
        if meta.get("format") != TABLES_FORMAT:
            raise ValueError(f"{path}: not a {TABLES_FORMAT} file (format {meta.get('format')!r})")
        t = load_file(str(path))
        hs = tuple(
            t[f"{layer}.{p}"].astype(np.float64) for layer in HS_LAYERS for p in ("weight", "bias")
        )
        return cls(
            N=int(meta["N"]),
            M=int(meta["M"]),
            z=SymbolTables(
                t["z.cdfs"].astype(np.int32),
                t["z.lengths"].astype(np.int32),
                t["z.offsets"].astype(np.int32),
            ),
            z_medians=t["z.medians"].astype(np.float32),
            y=SymbolTables(
                t["y.cdfs"].astype(np.int32),
                t["y.lengths"].astype(np.int32),
                t["y.offsets"].astype(np.int32),
            ),
            scale_table=t["y.scale_table"].astype(np.float64),
            hs_weights=hs,
        )


# -- the float64 hyper-synthesis (deterministic, small: z is 1x1 or 2x2 for a face) ----------
def _leaky(x: F64) -> F64:
    out: F64 = np.where(x > 0, x, x * LEAKY_SLOPE)
    return out


def _deconv5s2(x: F64, w: F64, b: F64) -> F64:
    """ConvTranspose2d(kernel 5, stride 2, padding 2, output_padding 1): [B,Ci,H,W] -> 2H x 2W.

    Each input cell scatters a 5x5 kernel into the full output ((H-1)*2+5 wide), which is then
    cropped by the padding (2 rows/columns at the start; output_padding keeps one extra at the
    end). ``w`` is [Ci, Co, 5, 5] as torch stores transposed convolutions. One matrix product
    (float64 BLAS) computes every cell's contribution.
    """
    bsz, ci, h, wd = x.shape
    co, k = w.shape[1], w.shape[2]
    cells = x.transpose(0, 2, 3, 1).reshape(-1, ci)  # [B*H*W, Ci]
    contrib = (cells @ w.reshape(ci, co * k * k)).reshape(bsz, h, wd, co, k, k)
    full = np.zeros((bsz, co, (h - 1) * 2 + k, (wd - 1) * 2 + k), np.float64)
    for i in range(h):
        for j in range(wd):
            full[:, :, 2 * i : 2 * i + k, 2 * j : 2 * j + k] += contrib[:, i, j]
    out: F64 = full[:, :, 2 : 2 + 2 * h, 2 : 2 + 2 * wd] + b[None, :, None, None]
    return out


def _conv3s1(x: F64, wm: F64, b: F64, rows: int, cols: int) -> F64:
    """Conv2d(kernel 3, stride 1, padding 1) on [B,Ci,H,W]; ``wm`` is the weight as a
    [(ki, kj, ci), Co] matrix (``LatentTables._conv_matrix``). Only the first ``rows`` x
    ``cols`` outputs are computed (the rest would be cropped off y's grid)."""
    bsz, ci, h, wd = x.shape
    co = wm.shape[1]
    xp = np.zeros((bsz, h + 2, wd + 2, ci), np.float64)
    xp[:, 1:-1, 1:-1] = x.transpose(0, 2, 3, 1)
    patches = np.empty((bsz, rows, cols, 3, 3, ci), np.float64)
    for ki in range(3):
        for kj in range(3):
            patches[:, :, :, ki, kj] = xp[:, ki : ki + rows, kj : kj + cols]
    out = patches.reshape(-1, 9 * ci) @ wm + b
    result: F64 = out.reshape(bsz, rows, cols, co).transpose(0, 3, 1, 2)
    return result


@dataclass(frozen=True)
class Latents:
    """What the v2 encoder codes for a batch, and what the decoder must get back."""

    z_symbols: I32  # [B, N, zH, zW]
    y_symbols: I32  # [B, M, yH, yW]
    indexes: I32  # [B, M, yH, yW] scale-table indexes
    means: F64  # [B, M, yH, yW] snapped means

    @property
    def y_hat(self) -> F64:
        """The quantised latents the server's entropy decoder returns: symbols + means."""
        out: F64 = self.y_symbols + self.means
        return out


def v2_latents(tables: LatentTables, y: NDArray[Any], z: NDArray[Any]) -> Latents:
    """Symbols and entropy parameters of y [B, M, yH, yW] and z [B, N, zH, zW] (float32, the
    analysis transform's outputs): the one derivation of both v2 encoders, the torch
    ``FaceCodec`` and the torch-free ``EdgeCodec``."""
    z32 = np.asarray(z, dtype=np.float32)
    medians = tables.z_medians[None, :, None, None]
    # EntropyBottleneck.quantize(z, "symbols", medians): float32 subtraction, half-to-even.
    z_symbols = np.round(z32 - medians).astype(np.int32)
    z_hat = z_symbols.astype(np.float32) + medians
    indexes, means = tables.gaussian_params(z_hat, (y.shape[-2], y.shape[-1]))
    y_symbols = np.round(np.asarray(y, dtype=np.float64) - means).astype(np.int32)
    return Latents(z_symbols, y_symbols, indexes, means)
