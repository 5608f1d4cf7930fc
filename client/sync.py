"""Download the server's active codec over REST, verify it, cache it, load it.

Endpoints used (server REST API, see docs/CLIENT.md):

* ``GET {http}/v1/models`` -> JSON list of models (or ``{"models": [...]}``); each entry has
  ``name``, ``version``, ``kind`` ("codec" | "classifier"), ``codec_id`` (codecs), ``active``
  and optionally ``sha256``.
* ``GET {http}/v1/codecs/{codec_id}/manifest`` -> the artifact's ``manifest.json``.
* ``GET {http}/v1/codecs/{codec_id}/download`` -> the raw ``weights.safetensors`` bytes
  (``/weights`` is tried when a server has no ``/download``).

Nothing downloaded is trusted: the manifest must describe the codec the listing named, the
weights must hash to the manifest's sha256 *before* they are written under their final name,
and ``core.artifacts.load_codec`` verifies again (and checks the architecture) on load.
Artifacts are cached at ``~/.cache/fercomp/models/<name>/<version>/`` (``$FERCOMP_CACHE``
overrides ``~/.cache/fercomp``), so a second sync of the same version downloads nothing but
the listing.

The server serves weights, not edge bundles: a downloaded codec is encoded by the torch
``FaceCodec`` (``pip install 'fercomp[client]'``). When the active codec is one the client
already ships (same name, version and sha256 in its model repository, with an ``edge/``
bundle), that copy is used and nothing is downloaded, so the torch-free edge client can follow
a server that switches between release codecs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from client.edge_codec import load_encoder_codec
from core.edge_codec import has_bundle
from core.manifest import (
    MANIFEST,
    WEIGHTS,
    ArtifactError,
    Manifest,
    ModelRepository,
    bundled_models_dir,
    read_manifest,
    sha256_file,
)

MAX_WEIGHTS_BYTES = 512 << 20  # refuse absurd downloads instead of filling the disk
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX8 = re.compile(r"^[0-9a-f]{8}$")


def default_cache_dir() -> Path:
    base = os.environ.get("FERCOMP_CACHE") or Path.home() / ".cache" / "fercomp"
    return Path(base).expanduser() / "models"


WEIGHTS_ROUTES = ("download", "weights")


class HTTPStatusError(ConnectionError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _get(url: str, timeout: float, limit: int = 1 << 20) -> bytes:
    """GET ``url``; network and HTTP errors become one-line ``ConnectionError``s."""
    req = urllib.request.Request(url, headers={"Accept": "application/json, */*"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data: bytes = resp.read(limit + 1)
    except urllib.error.HTTPError as e:
        raise HTTPStatusError(f"GET {url} failed: HTTP {e.code} {e.reason}", e.code) from e
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConnectionError(f"cannot reach {url}: {reason}") from e
    if len(data) > limit:
        raise ArtifactError(f"GET {url}: response larger than {limit} bytes")
    return data


def _get_json(url: str, timeout: float) -> Any:
    try:
        return json.loads(_get(url, timeout))
    except json.JSONDecodeError as e:
        raise ArtifactError(f"GET {url}: not JSON ({e.msg})") from e


def active_codec(http_url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The listing entry of the server's active codec."""
    data = _get_json(f"{http_url.rstrip('/')}/v1/models", timeout)
    models = data.get("models", []) if isinstance(data, dict) else data
    if not isinstance(models, list):
        raise ArtifactError("GET /v1/models: expected a list of models")
    active = [
        m for m in models if isinstance(m, dict) and m.get("kind") == "codec" and m.get("active")
    ]
    if not active:
        raise LookupError(f"server {http_url} reports no active codec")
    entry: dict[str, Any] = active[0]
    return entry


def sync_codec(
    http_url: str,
    cache_dir: str | Path | None = None,
    timeout: float = 30.0,
    device: str = "cpu",
    shipped: str | Path | None = None,
) -> tuple[Any, Manifest, Path]:
    """Make the server's active codec available locally; returns (codec, manifest, dir).

    ``shipped``: the model repository whose edge-bundled copy of the same codec is used
    instead of a download (default: the bundled repository, ``$FERCOMP_MODELS_DIR``)."""
    base = http_url.rstrip("/")
    entry = active_codec(base, timeout)
    codec_id = str(entry.get("codec_id", "")).lower()
    if not _HEX8.match(codec_id):
        raise ArtifactError(f"server listed a codec without a valid codec_id: {codec_id!r}")
    url = f"{base}/v1/codecs/{urllib.parse.quote(codec_id)}"
    try:
        manifest = Manifest.model_validate(_get_json(f"{url}/manifest", timeout))
    except ValidationError as e:
        raise ArtifactError(f"server sent an invalid manifest: {e.errors()[0]['msg']}") from e
    _check_manifest(manifest, entry, codec_id)
    local = _shipped_copy(manifest, Path(shipped) if shipped else bundled_models_dir())
    if local is not None:
        codec, loaded = load_encoder_codec(local, device=device)
        return codec, loaded, local

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    art_dir = root / manifest.name / manifest.version
    weights = art_dir / WEIGHTS
    cached = weights.is_file() and (art_dir / MANIFEST).is_file()
    if not (cached and sha256_file(weights) == manifest.sha256):
        _download_weights(url, art_dir, manifest, timeout)
    codec, loaded = load_encoder_codec(art_dir, device=device)  # verifies the weights again
    return codec, loaded, art_dir


def _shipped_copy(manifest: Manifest, root: Path) -> Path | None:
    """The artifact of ``root`` that is this codec (same ref and sha256) with an edge bundle."""
    if not root.is_dir():
        return None
    try:
        art_dir = ModelRepository(root).path(manifest.ref)
        same = read_manifest(art_dir).sha256 == manifest.sha256
    except ArtifactError:
        return None
    return art_dir if same and has_bundle(art_dir) else None


def _check_manifest(manifest: Manifest, entry: dict[str, Any], codec_id: str) -> None:
    if manifest.kind != "codec":
        raise ArtifactError(f"server sent a {manifest.kind} manifest for codec {codec_id}")
    # name/version become directory names: refuse anything that could escape the cache.
    for part in (manifest.name, manifest.version):
        if not _SAFE.match(part):
            raise ArtifactError(f"server sent an unsafe model name/version {part!r}")
    if manifest.codec_id != codec_id:
        raise ArtifactError(
            f"manifest is for codec {manifest.codec_id}, the server listed {codec_id}"
        )
    listed = entry.get("sha256")
    if listed and listed != manifest.sha256:
        raise ArtifactError("manifest sha256 differs from the server's model listing")
    if manifest.weights_file != WEIGHTS:
        raise ArtifactError(f"unexpected weights file name {manifest.weights_file!r}")


def _download_weights(codec_url: str, art_dir: Path, manifest: Manifest, timeout: float) -> None:
    for i, route in enumerate(WEIGHTS_ROUTES):
        try:
            data = _get(f"{codec_url}/{route}", timeout, limit=MAX_WEIGHTS_BYTES)
            break
        except HTTPStatusError as e:
            if e.status != 404 or i == len(WEIGHTS_ROUTES) - 1:
                raise
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.sha256:
        raise ArtifactError(
            f"downloaded weights hash to {digest[:12]}…, manifest says {manifest.sha256[:12]}… "
            "(corrupt or tampered download; nothing was cached)"
        )
    art_dir.mkdir(parents=True, exist_ok=True)
    # Write both files under temporary names, then rename: a crash never leaves a half cache.
    tmp_w, tmp_m = art_dir / (WEIGHTS + ".part"), art_dir / (MANIFEST + ".part")
    tmp_w.write_bytes(data)
    tmp_m.write_text(manifest.model_dump_json(indent=2) + "\n")
    os.replace(tmp_w, art_dir / WEIGHTS)
    os.replace(tmp_m, art_dir / MANIFEST)
