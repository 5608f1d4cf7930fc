"""One rANS string per face: the hyper-latent z's symbols, then y's, under a single flush.

CompressAI's hyperprior writes two strings per image (``[y_string, z_string]``), one rANS coder
each. Every rANS string ends with a flush of the 64-bit coder state (8 bytes) and is written in
32-bit words (2 bytes lost on average), and the container stores one more length varint. At the
80-250 bytes a face costs, that is ~7 bytes per face (7 % at 93 B; measured in docs/CODEC.md).

Here both latents go through CompressAI's ``BufferedRansEncoder`` in decoding order (z first,
since y's Gaussian parameters are computed from the decoded z) and are flushed once; the
decoder reads z with ``RansDecoder.decode_stream``, derives y's parameters, and continues on the
same stream. Symbols, indexes and CDF tables are exactly those of CompressAI's
``EntropyModel.compress``/``decompress``: only the string layout differs, so a merged face and a
two-string face of the same codec decode to the same latents.

A container with **one** string holds this layout, with **two** the CompressAI layout (every
codec release before it); ``FaceCodec`` reads both. The rANS decoder still has no bounds
checks: the merged string is zero-padded for the read bound of all the symbols it codes
(``core/entropy_guard.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyModel
from torch import Tensor

from core.entropy_guard import padded


@dataclass(frozen=True)
class CoderTables:
    """An entropy model's quantised CDFs as the native coder takes them (built once)."""

    cdfs: list[list[int]]
    cdf_lengths: list[int]
    offsets: list[int]

    @classmethod
    def of(cls, model: EntropyModel) -> CoderTables:
        return cls(
            model._quantized_cdf.tolist(),
            model._cdf_length.reshape(-1).int().tolist(),
            model._offset.reshape(-1).int().tolist(),
        )


def _flat(t: Tensor) -> list[int]:
    values: list[int] = t.reshape(-1).int().tolist()  # int32 -> Python ints already
    return values


def encode_merged(
    z_symbols: Tensor,
    z_indexes: Tensor,
    y_symbols: Tensor,
    y_indexes: Tensor,
    z_tables: CoderTables,
    y_tables: CoderTables,
) -> list[bytes]:
    """One string per batch item: z's symbols, then y's (integer tensors [B, C, H, W])."""
    out = []
    for i in range(z_symbols.shape[0]):
        enc = BufferedRansEncoder()
        for sym, idx, t in ((z_symbols, z_indexes, z_tables), (y_symbols, y_indexes, y_tables)):
            enc.encode_with_indexes(_flat(sym[i]), _flat(idx[i]), t.cdfs, t.cdf_lengths, t.offsets)
        out.append(bytes(enc.flush()))
    return out


class MergedReader:
    """Reads one face's string: z's symbols first, then (from them) y's, on the same stream.

    ``total_symbols`` (z's plus y's) sizes the zero padding that keeps the native decoder inside
    its input whatever the bytes say.
    """

    def __init__(self, string: bytes, total_symbols: int) -> None:
        self._dec = RansDecoder()
        self._dec.set_stream(padded(string, total_symbols))

    def read(self, indexes: Tensor, tables: CoderTables) -> Tensor:
        """The next ``indexes.numel()`` symbols, as int32 shaped like ``indexes``."""
        t = tables
        values = self._dec.decode_stream(_flat(indexes), t.cdfs, t.cdf_lengths, t.offsets)
        return torch.tensor(values, dtype=torch.int32).reshape(indexes.shape)
