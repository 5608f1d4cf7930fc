"""Bitstream v2's entropy coder: constriction's ANS over CompressAI's integer tables.

One string per face, read in this order: z's symbols (one table per channel), z's escaped raw
values, then (once the caller has run the hyper path on z) y's symbols grouped by scale index
in ascending index order, then y's escaped raw values. The ANS coder is a stack, so the encoder
pushes these parts in reverse. Grouping y by table lets each group go through one prebuilt
model in one vectorised call (~30 calls per face instead of 864), which is what makes decoding
~0.1 ms per face; the order is fully determined by the indexes both sides derive alike.

Why constriction (docs/BITSTREAM.md): a Rust library made for learned compression, on PyPI for
every platform the edge runs on, whose decoder cannot read outside its input by construction
(no zero padding, no subprocess needed); its Categorical models built from the same float
arrays quantise to the same integer tables on any machine (integer arithmetic on exact
inputs), so the tables need no second implementation.

On the wire the string is the coder's 32-bit words in little-endian order, without the zero
bytes that end the last word (the decoder restores them; a string ending in a zero byte is not
canonical and is refused).

Escapes mirror CompressAI's rANS: a value outside a table's range is coded as the table's last
symbol, followed by a raw value (``Uniform(2**RAW_BITS)``): ``-2v-1`` below the range,
``2(v - escape)`` above it. The decoder checks that every symbol lies in its table and that the
string is consumed exactly; any other byte pattern raises ``MalformedBitstream``.
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np
from numpy.typing import NDArray

from core.bitstream import MalformedBitstream
from core.latent_tables import LatentTables, SymbolTables

I32 = NDArray[np.int32]
#: Bits of an escaped raw value; symbols are clamped to what it can carry (far beyond any face).
RAW_BITS = 14
#: |symbol| the encoder keeps (and the decoder accepts); ``core.codec.MAX_LATENT`` is 4096.
MAX_SYMBOL = 4000
_ANS = constriction.stream.stack.AnsCoder
_Categorical = constriction.stream.model.Categorical
_RAW_MODEL = constriction.stream.model.Uniform(1 << RAW_BITS)


@dataclass
class _Models:
    per_table: list[constriction.stream.model.Categorical]
    padded: NDArray[np.float64]  # [T, width] for the per-symbol (z) family


def _models(t: SymbolTables) -> _Models:
    return _Models(
        [_Categorical(t.probabilities(i), perfect=False) for i in range(len(t.lengths))],
        t.padded_probabilities(),
    )


class LatentCoder:
    """Encodes/decodes one face's latent symbols with a codec's ``LatentTables``."""

    def __init__(self, tables: LatentTables) -> None:
        self.tables = tables
        self._z = _models(tables.z)
        self._y = _models(tables.y)
        self._family = _Categorical(perfect=False)

    # -- encode ----------------------------------------------------------------------------
    def encode(self, z_symbols: I32, y_symbols: I32, y_indexes: I32) -> bytes:
        """One face: z symbols [N, zH, zW] (channel-major), y symbols and scale indexes [M, yH,
        yW]. Symbols beyond ``MAX_SYMBOL`` are clamped (no real face comes near)."""
        ans = _ANS()
        zs = np.clip(z_symbols.reshape(-1), -MAX_SYMBOL, MAX_SYMBOL).astype(np.int64)
        ys = np.clip(y_symbols.reshape(-1), -MAX_SYMBOL, MAX_SYMBOL).astype(np.int64)
        z_idx = np.repeat(np.arange(self.tables.N, dtype=np.int32), zs.size // self.tables.N)
        y_idx = y_indexes.reshape(-1).astype(np.int32)
        y_vals, y_raw = _split_escapes(ys, y_idx, self.tables.y)
        z_vals, z_raw = _split_escapes(zs, z_idx, self.tables.z)
        # Pushed in reverse of the decoding order (a stack).
        if y_raw.size:
            ans.encode_reverse(y_raw, _RAW_MODEL)
        order = np.argsort(y_idx, kind="stable")
        sorted_idx, sorted_vals = y_idx[order], y_vals[order]
        starts, ends = _runs(sorted_idx)
        for s, e in zip(starts[::-1], ends[::-1], strict=True):
            ans.encode_reverse(sorted_vals[s:e], self._y.per_table[sorted_idx[s]])
        if z_raw.size:
            ans.encode_reverse(z_raw, _RAW_MODEL)
        ans.encode_reverse(z_vals, self._family, self._z.padded[z_idx])
        words: NDArray[np.uint32] = ans.get_compressed()
        # The top word is the coder's final state, often < 2**16: its zero high bytes (last in
        # little-endian order) are implied (1.5 B per face).
        return words.astype("<u4").tobytes().rstrip(b"\0")

    # -- decode ----------------------------------------------------------------------------
    def start(self, string: bytes, z_count: int) -> DecodingFace:
        """Open a face's string and read its z symbols (the caller then runs the hyper path)."""
        if string.endswith(b"\0"):  # canonical form: implied zero bytes are never written
            raise MalformedBitstream("v2 entropy string ends in a zero byte (not canonical)")
        padded = string + bytes(-len(string) % 4)
        words = np.frombuffer(padded, dtype="<u4").astype(np.uint32)
        try:
            ans = _ANS(words)
        except ValueError as e:  # e.g. a zero last word: never written by an encoder
            raise MalformedBitstream(f"v2 entropy string: {e}") from e
        z_idx = np.repeat(np.arange(self.tables.N, dtype=np.int32), z_count // self.tables.N)
        z_vals = ans.decode(self._family, self._z.padded[z_idx])
        z = _join_escapes(ans, z_vals, z_idx, self.tables.z, "z")
        return DecodingFace(ans, z)

    def finish(self, face: DecodingFace, y_indexes: I32) -> I32:
        """Read y's symbols for the scale indexes derived from z; checks the string is used up."""
        ans = face.ans
        y_idx = y_indexes.reshape(-1).astype(np.int32)
        order = np.argsort(y_idx, kind="stable")
        sorted_idx = y_idx[order]
        vals = np.empty(y_idx.size, np.int32)
        starts, ends = _runs(sorted_idx)
        for s, e in zip(starts, ends, strict=True):
            vals[order[s:e]] = ans.decode(self._y.per_table[sorted_idx[s]], int(e - s))
        y = _join_escapes(ans, vals, y_idx, self.tables.y, "y")
        if not ans.is_empty():
            raise MalformedBitstream("v2 entropy string has data left after every symbol")
        return y.reshape(y_indexes.shape)


@dataclass
class DecodingFace:
    """A face whose z has been read; ``z_symbols`` is flat, channel-major."""

    ans: constriction.stream.stack.AnsCoder
    z_symbols: I32


def _runs(sorted_idx: I32) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    if sorted_idx.size == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
    return starts, np.r_[starts[1:], sorted_idx.size]


def _split_escapes(symbols: NDArray[np.int64], idx: I32, t: SymbolTables) -> tuple[I32, I32]:
    """(table values with escapes, raw values of the escaped symbols in order)."""
    v = symbols - t.offsets[idx]
    esc = t.escape[idx]
    low, high = v < 0, v >= esc
    raw = np.where(low, -2 * v - 1, 2 * (v - esc))[low | high]
    v = np.where(low | high, esc, v)
    if raw.size and int(raw.max()) >= 1 << RAW_BITS:  # only if MAX_SYMBOL were raised
        raise ValueError("latent symbol too large for bitstream v2")
    return v.astype(np.int32), raw.astype(np.int32)


def _join_escapes(
    ans: constriction.stream.stack.AnsCoder, vals: I32, idx: I32, t: SymbolTables, what: str
) -> I32:
    esc = t.escape[idx]
    if (vals > esc).any():  # only the padded (per-symbol) family can decode past a table
        raise MalformedBitstream(f"v2 entropy string: a {what} symbol outside its table")
    escaped = np.flatnonzero(vals == esc)
    v = vals.astype(np.int64)
    if escaped.size:
        raw = ans.decode(_RAW_MODEL, int(escaped.size)).astype(np.int64)
        v[escaped] = np.where(raw % 2 == 1, -(raw + 1) // 2, esc[escaped] + raw // 2)
    symbols = v + t.offsets[idx]
    if symbols.size and int(np.abs(symbols).max()) > MAX_SYMBOL:
        raise MalformedBitstream(f"v2 entropy string: a {what} symbol beyond +-{MAX_SYMBOL}")
    out: I32 = symbols.astype(np.int32)
    return out
