"""Inference wrapper of the face codec: batches of faces to containers and back.

Encoders write **format v2** (docs/BITSTREAM.md): one string per face from constriction's ANS
coder over the codec's integer tables, with the Gaussian parameters from the float64 numpy
hyper path that the torch-free edge encoder runs too (``core/latent_tables.py``,
``core/ans_coding.py``): a face encoded anywhere decodes here to exactly the latents meant.

**Format v1** still decodes (old clients): the hyper-synthesis runs in float64 torch with its
outputs snapped to grids, and every string reaches CompressAI's native rANS decoder zero-padded
to a proven read bound (``core/entropy_guard.py``); strings are laid out merged (one per face)
or CompressAI-style (``[y, z]``) (``core/latent_coding.py``). ``encode(version=1)`` still
writes v1 for servers older than v2.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from core import bitstream
from core.ans_coding import LatentCoder
from core.codec import (
    MAX_LATENT,
    MEAN_GRID,
    CodecConfig,
    FaceHyperprior,
    latent_shapes,
    pad_to_alignment,
)
from core.entropy_guard import PaddedStrings, check_string_lengths
from core.latent_coding import CoderTables, MergedReader, encode_merged
from core.latent_tables import LatentTables, SymbolTables, v2_latents

#: Merged-layout faces decoded together (each holds a ~1.8 MB padded string meanwhile).
MERGED_CHUNK = 16


class FaceCodec:
    """Inference wrapper: batch encode images to v1 containers and decode them back.

    ``device`` holds the big transforms (g_a, g_s); the hyper path that decides the entropy
    parameters always runs on the CPU in float64 so any server decodes any client's stream.
    """

    def __init__(
        self, model: FaceHyperprior, codec_id: bytes, device: str | torch.device = "cpu"
    ) -> None:
        if len(codec_id) != 4:
            raise ValueError("codec_id must be 4 bytes")
        # A private copy: the entropy models must stay on the CPU (the range coder and the
        # deterministic hyper path run there) while g_a/g_s move to ``device``.
        self.model = copy.deepcopy(model).eval()
        self.codec_id = codec_id
        self.device = torch.device(device)
        self.model.to(self.device)
        self.model.entropy_bottleneck.to("cpu")
        self.model.gaussian_conditional.to("cpu")
        # Deterministic copies of the tiny hyper path, kept on the CPU in float64.
        self._h_s64 = copy.deepcopy(self.model.h_s).to("cpu", torch.float64).eval()
        self._eb = model.entropy_bottleneck
        self._gc = model.gaussian_conditional
        if self._eb._quantized_cdf.numel() == 0 or self._gc._quantized_cdf.numel() == 0:
            raise ValueError("codec has no entropy-coder tables; call update(force=True) first")
        self._z_tables, self._y_tables = CoderTables.of(self._eb), CoderTables.of(self._gc)
        self.tables = latent_tables_of(self.model)
        self._coder = LatentCoder(self.tables)

    @property
    def config(self) -> CodecConfig:
        cfg: CodecConfig = self.model.config
        return cfg

    @property
    def codec_id_hex(self) -> str:
        return self.codec_id.hex()

    # -- entropy parameters: the part that must be bit-identical on both sides -------------
    @property
    def align_log2(self) -> int:
        return self.config.align_log2

    def _gaussian_params(
        self, z_hat: Tensor, y_size: tuple[int, int] | None = None
    ) -> tuple[Tensor, Tensor]:
        """(scale indexes, snapped means) for a batch of decoded hyper-latents (CPU), cropped
        to y's grid as in ``FaceHyperprior.gaussian_params`` (None: the full 4x z grid)."""
        with torch.no_grad():
            params = self._h_s64(z_hat.to("cpu", torch.float64))
            if y_size is not None:
                params = params[..., : y_size[0], : y_size[1]]
            scales, mu = params.chunk(2, 1)
            return self._gc.build_indexes(scales), torch.round(mu / MEAN_GRID) * MEAN_GRID

    # -- encode ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self, images: Tensor, merged: bool = True, version: int | None = None
    ) -> list[bytes]:
        """Encode a batch [B, C, H, W] of images in [0, 1] to one container per image.

        ``version`` 2 (default): constriction ANS, one string per face. ``version`` 1, for
        servers older than v2: ``merged`` (default) writes one rANS string per face, z then y
        (``core/latent_coding.py``); ``False`` CompressAI's two strings ``[y, z]``, which
        servers older than the merged layout require, and implies v1 unless ``version`` says
        otherwise. All decode to the same image.
        """
        if version is None:
            version = bitstream.FORMAT_VERSION if merged else bitstream.FORMAT_V1
        if version not in bitstream.SUPPORTED_VERSIONS or (version == 2 and not merged):
            raise ValueError(f"cannot write format version {version}")
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected [B, {self.config.in_channels}, H, W] images, got {tuple(images.shape)}"
            )
        _, c, h, w = images.shape
        x = pad_to_alignment(images.clamp(0, 1).to(self.device, torch.float32), self.align_log2)
        y = self.model.g_a(x)
        z = self.model.h_a(y).cpu()
        header = bitstream.Header(
            codec_id=self.codec_id,
            channels=c,
            height=h,
            width=w,
            align_log2=self.align_log2,
            version=version,
        )
        y_size = (y.shape[-2], y.shape[-1])
        strings: list[tuple[bytes, ...]]
        if version == bitstream.FORMAT_V2:
            strings = [(s,) for s in self._encode_v2(y, z)]
        elif merged:
            z_medians = self._z_medians(z.shape[0], z.dim() - 2)
            z_symbols = self._eb.quantize(z, "symbols", z_medians)
            # What EntropyBottleneck.decompress returns for these symbols (float32).
            z_hat = self._eb.dequantize(z_symbols, z_medians)
            indexes, means = self._gaussian_params(z_hat, y_size)
            y_symbols = self._gc.quantize(y.cpu().double(), "symbols", means)
            one = encode_merged(
                z_symbols,
                self._eb._build_indexes(z.size()),
                y_symbols,
                indexes,
                self._z_tables,
                self._y_tables,
            )
            strings = [(s,) for s in one]
        else:
            z_strings = self._eb.compress(z)
            z_hat = self._eb.decompress(z_strings, z.shape[-2:])
            indexes, means = self._gaussian_params(z_hat, y_size)
            y_strings = self._gc.compress(y.cpu().double(), indexes, means=means)
            strings = list(zip(y_strings, z_strings, strict=True))
        return [bitstream.pack(bitstream.Container(header=header, strings=s)) for s in strings]

    def _encode_v2(self, y: Tensor, z: Tensor) -> list[bytes]:
        """The v2 strings of a batch, from the same numpy derivation as ``core.edge_codec``."""
        lat = v2_latents(self.tables, y.cpu().numpy(), z.cpu().numpy())
        return [
            self._coder.encode(lat.z_symbols[i], lat.y_symbols[i], lat.indexes[i])
            for i in range(len(y))
        ]

    def _z_medians(self, batch: int, spatial_dims: int) -> Tensor:
        """The EntropyBottleneck's medians broadcast as its ``compress``/``decompress`` do."""
        medians = self._eb._extend_ndims(self._eb._get_medians().detach(), spatial_dims)
        out: Tensor = medians.expand(batch, *([-1] * (spatial_dims + 1)))
        return out

    # -- decode ----------------------------------------------------------------------------
    def parse(self, payload: bytes, limits: bitstream.Limits | None = None) -> bitstream.Container:
        """Parse and check that this codec can decode the container."""
        c = bitstream.parse(payload, limits or bitstream.Limits(), known_codecs=[self.codec_id])
        h = c.header
        if h.channels != self.config.in_channels:
            raise bitstream.DimensionsOutOfRange(
                f"codec {self.codec_id_hex} decodes {self.config.in_channels}-channel images, "
                f"header says {h.channels}"
            )
        if h.align_log2 != self.align_log2:
            # The latent grid (and so every symbol count) follows from the alignment: a stream
            # padded otherwise cannot be this codec's, whatever its id says.
            raise bitstream.DimensionsOutOfRange(
                f"codec {self.codec_id_hex} pads images to multiples of {1 << self.align_log2} "
                f"(align_log2 {self.align_log2}), header says align_log2 {h.align_log2} "
                f"({1 << h.align_log2}): not a stream of this codec artifact"
            )
        y_symbols, z_symbols = self.symbol_counts(h.padded_size)
        # v2 (one ANS string, bitstream.parse checked) and v1's merged layout: z then y in one.
        if len(c.strings) == 1:
            check_string_lengths(c.strings, y_symbols + z_symbols, "latent")
        elif len(c.strings) == 2:  # CompressAI's layout [y, z]
            check_string_lengths(c.strings[:1], y_symbols, "y")
            check_string_lengths(c.strings[1:], z_symbols, "z")
        else:
            raise bitstream.MalformedBitstream(
                f"hyperprior streams have 1 string (merged) or 2 (y, z), got {len(c.strings)}"
            )
        return c

    def symbol_counts(self, padded_size: tuple[int, int]) -> tuple[int, int]:
        """Latent symbols the entropy decoder reads for one image: (y, z)."""
        (yh, yw), (zh, zw) = latent_shapes(padded_size)
        return self.config.M * yh * yw, self.config.N * zh * zw

    @torch.no_grad()
    def decode_latents(self, containers: list[bitstream.Container]) -> Tensor:
        """Entropy-decode same-sized containers to the quantised latents y_hat (CPU, float32).

        Containers of either string layout may be mixed; the output keeps their order.
        """
        if not containers:
            raise ValueError("nothing to decode")
        sizes = {c.header.padded_size for c in containers}
        if len(sizes) != 1:
            raise ValueError("decode_latents needs containers of one size; group them first")
        padded = sizes.pop()
        v2 = [i for i, c in enumerate(containers) if c.header.version == bitstream.FORMAT_V2]
        v1 = [i for i, c in enumerate(containers) if c.header.version != bitstream.FORMAT_V2]
        merged = [i for i in v1 if len(containers[i].strings) == 1]
        split = [i for i in v1 if len(containers[i].strings) != 1]
        parts: dict[int, Tensor] = {}
        if v2:
            y_v2 = self._decode_v2([containers[i].strings[0] for i in v2], padded)
            parts.update({i: y_v2[j] for j, i in enumerate(v2)})
        if split:
            y_split = self._decode_split([containers[i] for i in split], padded)
            parts.update({i: y_split[j] for j, i in enumerate(split)})
        for start in range(0, len(merged), MERGED_CHUNK):
            chunk = merged[start : start + MERGED_CHUNK]
            y_chunk = self._decode_merged([containers[i].strings[0] for i in chunk], padded)
            parts.update({i: y_chunk[j] for j, i in enumerate(chunk)})
        y_hat = torch.stack([parts[i] for i in range(len(containers))])
        if y_hat.numel() and float(y_hat.abs().max()) > MAX_LATENT:
            raise bitstream.MalformedBitstream(
                f"decoded latents exceed +-{MAX_LATENT:g}: not a stream this codec wrote"
            )
        # Symbols are integers and means lie on a 1/256 grid: exact in float32.
        out: Tensor = y_hat.float()
        return out

    def _decode_v2(self, strings: list[bytes], padded: tuple[int, int]) -> Tensor:
        """Format v2 (``core/ans_coding.py``), in this process: constriction's decoder cannot
        read outside its input, so no padding and no isolation are needed."""
        y_shape, z_shape = latent_shapes(padded)
        _, z_count = self.symbol_counts(padded)
        faces = [self._coder.start(s, z_count) for s in strings]
        z_symbols = np.stack([f.z_symbols for f in faces]).reshape(-1, self.config.N, *z_shape)
        z_hat = z_symbols.astype(np.float32) + self.tables.z_medians[None, :, None, None]
        indexes, means = self.tables.gaussian_params(z_hat, y_shape)
        y = np.stack([self._coder.finish(f, indexes[i]) for i, f in enumerate(faces)])
        return torch.from_numpy(y + means)

    def _decode_split(
        self, containers: list[bitstream.Container], padded: tuple[int, int]
    ) -> Tensor:
        """CompressAI's two-string layout, batched: all z strings, then all y strings."""
        y_shape, z_shape = latent_shapes(padded)
        y_symbols, z_symbols = self.symbol_counts(padded)
        # The native rANS decoder has no bounds checks: every string goes in zero-padded to a
        # proven read bound (core/entropy_guard.py), so no input can make it read past its end.
        z_strings = PaddedStrings([c.strings[1] for c in containers], z_symbols)
        z_hat = self._eb.decompress(z_strings, z_shape)
        indexes, means = self._gaussian_params(z_hat, y_shape)
        y_strings = PaddedStrings([c.strings[0] for c in containers], y_symbols)
        out: Tensor = self._gc.decompress(y_strings, indexes, dtype=torch.float64, means=means)
        return out

    def _decode_merged(self, strings: list[bytes], padded: tuple[int, int]) -> Tensor:
        """Faces in the merged layout (``core/latent_coding.py``): y_hat [B, M, yh, yw].

        Each face's z is read first, the hyper-synthesis runs once for the whole chunk, then
        each reader continues with its y: a reader holds its zero-padded string copy (~1.8 MB
        for a 48x48 face) until then, hence chunks of ``MERGED_CHUNK`` faces.
        """
        y_shape, z_shape = latent_shapes(padded)
        total = sum(self.symbol_counts(padded))
        readers = [MergedReader(s, total) for s in strings]
        z_indexes = self._eb._build_indexes((1, self.config.N, *z_shape))
        z_symbols = torch.cat([r.read(z_indexes, self._z_tables) for r in readers])
        z_hat = self._eb.dequantize(z_symbols, self._z_medians(len(strings), 2))
        indexes, means = self._gaussian_params(z_hat, y_shape)
        y_symbols = torch.cat(
            [r.read(indexes[i : i + 1], self._y_tables) for i, r in enumerate(readers)]
        )
        out: Tensor = self._gc.dequantize(y_symbols, means, torch.float64)
        return out

    @torch.no_grad()
    def synthesize(self, y_hat: Tensor, height: int, width: int) -> Tensor:
        """Run the synthesis transform on ``self.device`` and crop to the original size."""
        x_hat: Tensor = self.model.g_s(y_hat.to(self.device))
        # nan_to_num: an image the classifier can always read (NaN would survive clamp).
        return torch.nan_to_num(x_hat[..., :height, :width], 0.5, 1.0, 0.0).clamp_(0, 1)

    def decode(self, payloads: list[bytes]) -> list[Tensor]:
        """Decode containers (any mix of sizes) to images [C, H, W] in [0, 1], in order."""
        containers = [self.parse(p) for p in payloads]
        out: list[Tensor | None] = [None] * len(containers)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, c in enumerate(containers):
            groups.setdefault((c.header.height, c.header.width), []).append(i)
        for (h, w), idx in groups.items():
            x_hat = self.synthesize(self.decode_latents([containers[i] for i in idx]), h, w)
            for j, i in enumerate(idx):
                out[i] = x_hat[j]
        return [t for t in out if t is not None]


def latent_tables_of(model: FaceHyperprior) -> LatentTables:
    """A codec's v2 tables and float64 hyper path as numpy (``entropy.safetensors``)."""
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional

    def symbol_tables(m: torch.nn.Module) -> SymbolTables:
        def buf(name: str) -> np.ndarray:  # type: ignore[type-arg]
            t: Tensor = getattr(m, name)
            return t.detach().cpu().reshape(t.shape[0], -1).numpy().astype(np.int32)

        return SymbolTables(
            buf("_quantized_cdf"), buf("_cdf_length").reshape(-1), buf("_offset").reshape(-1)
        )

    hs = [model.h_s[i] for i in (0, 2, 4)]
    return LatentTables(
        N=model.config.N,
        M=model.config.M,
        z=symbol_tables(eb),
        z_medians=eb._get_medians().detach().reshape(-1).numpy().astype(np.float32),
        y=symbol_tables(gc),
        scale_table=gc.scale_table.numpy().astype(np.float64),
        hs_weights=tuple(
            p.detach().to("cpu", torch.float64).numpy() for m in hs for p in (m.weight, m.bias)
        ),
    )
