"""Keep CompressAI's rANS decoder inside its input, whatever the input says.

Root cause of the remote crash of issue 9: CompressAI's ``RansDecoder.decode_with_indexes``
(``cpp_exts/rans/rans_interface.cpp``) reads the stream through a ``uint32_t*`` with no bounds
check. It decodes exactly as many symbols as the *indexes* ask for — which the header's declared
geometry decides — and every symbol may read more 32-bit words. A valid stream is consumed
exactly (rANS decoding reads back precisely the words the encoder wrote), but a short hostile
string with a large declared size (two 8-byte strings, 256x256) makes the decoder walk tens of
kilobytes past the end of its heap copy until it reaches an unmapped page: SIGSEGV.

Two guards, applied before the native decoder runs:

1. **Size sanity** (:func:`check_string_lengths`): a string may not be longer than
   ``MAX_BYTES_PER_SYMBOL`` bytes per symbol it codes. Our faces cost ~1 bit per latent
   symbol; 4 bytes per symbol is 32 bits, more than the bypass code spends on any value the
   transforms produce. Longer strings are rejected as ``malformed``.
2. **Zero padding to a proven read bound** (:class:`PaddedStrings`): every string is handed to
   the decoder followed by enough zero bytes that the decoder cannot reach the end, whatever
   the bytes are. Appending zeros does not change the decoding of a valid stream (those words
   are never read), so it is invisible to legitimate clients. The bound
   (:func:`max_words_read`) follows the decoder's code; per symbol, once past the real data:

   - ``Rans64DecAdvance`` renormalises at most once: **1 word**;
   - in bypass mode (symbol == max value), the first ``Rans64DecGetBits``: 1 word; the
     ``while (val == 15)`` loop: each such iteration shifts four 1-bits out of the 64-bit
     state and, past the data, refills with zero words only, so at most 16 iterations see
     ``val == 15`` (plus the last): **17 words**; the loop leaves ``n_bypass <= 15 * 18``,
     and the raw-value loop reads one word per bypass chunk at most: **270 words**.

   So at most ``SYMBOL_WORDS = 289`` words per symbol past the data. Bypass chunks counted
   *before* the data ran out can also be paid for after it: each ``val == 15`` iteration
   consumes 4 state bits, so over ``W`` data words there are at most ``8 * (W + 2) + 16``
   of them, each adding <= 15 chunks (``CARRY_WORDS_PER_DATA_WORD``). Plus 2 words of
   ``Rans64DecInit`` and one word of slack for a string whose length is not a multiple of 4.

The padded copy of one string exists only while that string is decoded (a lazy sequence), so
a batch never holds more than one padded string. For a 48x48 face (1,536 + 64 symbols) the
pad is ~1.8 MB, zero-filled, costing ~0.2 ms per face (``benchmarks/served_throughput.py``).
The service additionally decodes in a supervised worker process (defence in depth).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import SupportsIndex, overload

from core import bitstream

#: Upper bound on legitimate string size, per symbol coded (see module docstring).
MAX_BYTES_PER_SYMBOL = 4
#: Words the decoder can read past the data per symbol (module docstring).
SYMBOL_WORDS = 1 + 1 + 17 + 15 * 18
#: Bypass chunks owed per data word, read after the data ran out.
CARRY_WORDS_PER_DATA_WORD = 15 * 8
#: Words of ``Rans64DecInit`` plus one word of slack for a ragged final word.
INIT_WORDS = 3


def max_words_read(symbols: int, string_len: int) -> int:
    """Upper bound on the 32-bit words the rANS decoder reads past ``string_len`` bytes."""
    data_words = -(-string_len // 4)
    carry = CARRY_WORDS_PER_DATA_WORD * (data_words + 2) + 15 * 16
    return INIT_WORDS + SYMBOL_WORDS * symbols + carry


def pad_bytes(symbols: int, string_len: int) -> int:
    return 4 * max_words_read(symbols, string_len)


def padded(string: bytes, symbols: int) -> bytes:
    """``string`` followed by the zero bytes that keep the decoder of ``symbols`` symbols inside."""
    return string + bytes(pad_bytes(symbols, len(string)))


def check_string_lengths(strings: Sequence[bytes], symbols: int, what: str) -> None:
    """Reject strings longer than any stream of ``symbols`` symbols we could have written."""
    limit = MAX_BYTES_PER_SYMBOL * symbols + 8
    for s in strings:
        if len(s) > limit:
            raise bitstream.MalformedBitstream(
                f"{what} string of {len(s)} bytes for {symbols} symbols "
                f"(at most {limit} bytes are possible)"
            )


class PaddedStrings(list[bytes]):
    """A list of entropy-coded strings that yields each one zero-padded, one at a time.

    CompressAI's ``decompress`` insists on a ``list``/``tuple`` and iterates it once; this
    subclass keeps the original strings and pads lazily on access, so the padding of a whole
    batch is never in memory at once.
    """

    def __init__(self, strings: Sequence[bytes], symbols: int) -> None:
        super().__init__(strings)
        self.symbols = symbols

    def _pad(self, s: bytes) -> bytes:
        return padded(s, self.symbols)

    def __iter__(self) -> Iterator[bytes]:
        for s in super().__iter__():
            yield self._pad(s)

    @overload
    def __getitem__(self, i: SupportsIndex) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...
    def __getitem__(self, i: SupportsIndex | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return [self._pad(s) for s in super().__getitem__(i)]
        return self._pad(super().__getitem__(i))
