"""--sync-codec: download the server's active codec over REST, verify, cache, load."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from client.sync import sync_codec
from core.artifacts import ArtifactError, read_manifest
from tests.client.test_sdk import free_port


class Registry:
    """What the fake REST server serves; tests tamper with it."""

    def __init__(self, art: Path) -> None:
        self.manifest = json.loads((art / "manifest.json").read_text())
        self.weights = (art / "weights.safetensors").read_bytes()
        self.hits: list[str] = []
        self.route = "download"  # the real server's weights route; "weights" is the fallback


@pytest.fixture
def rest(model_repo: Path) -> Iterator[tuple[str, Registry]]:
    reg = Registry(model_repo / "tiny-codec" / "2")
    cid = reg.manifest["codec_id"]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            reg.hits.append(self.path)
            listing = [
                {
                    "name": "tiny-codec",
                    "version": "2",
                    "kind": "codec",
                    "codec_id": cid,
                    "active": True,
                    "sha256": reg.manifest["sha256"],
                },
                {"name": "tiny-classifier", "version": "1", "kind": "classifier", "active": True},
            ]
            routes = {
                "/v1/models": json.dumps({"models": listing}).encode(),
                f"/v1/codecs/{cid}/manifest": json.dumps(reg.manifest).encode(),
                f"/v1/codecs/{cid}/{reg.route}": reg.weights,
            }
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", reg
    finally:
        server.shutdown()
        server.server_close()


def test_sync_downloads_verifies_and_caches(rest, tmp_path: Path) -> None:
    url, reg = rest
    codec, manifest, where = sync_codec(url, cache_dir=tmp_path)
    assert manifest.ref == "tiny-codec/2" and where == tmp_path / "tiny-codec" / "2"
    assert codec.codec_id_hex == reg.manifest["codec_id"]
    assert read_manifest(where).sha256 == reg.manifest["sha256"]
    weight_hits = sum(h.endswith("/download") for h in reg.hits)
    sync_codec(url, cache_dir=tmp_path)  # cached: no second download
    assert sum(h.endswith("/download") for h in reg.hits) == weight_hits == 1


def test_weights_route_fallback(rest, tmp_path: Path) -> None:
    url, reg = rest
    reg.route = "weights"
    assert sync_codec(url, cache_dir=tmp_path)[1].ref == "tiny-codec/2"
    assert [h.rsplit("/", 1)[-1] for h in reg.hits[-2:]] == ["download", "weights"]


def test_tampered_weights_are_refused_and_not_cached(rest, tmp_path: Path) -> None:
    url, reg = rest
    reg.weights = reg.weights[:-1] + bytes([reg.weights[-1] ^ 1])
    with pytest.raises(ArtifactError, match="tampered"):
        sync_codec(url, cache_dir=tmp_path)
    assert not (tmp_path / "tiny-codec" / "2" / "weights.safetensors").exists()


def test_unsafe_names_and_unreachable_servers(rest, tmp_path: Path) -> None:
    url, reg = rest
    reg.manifest["version"] = ".."
    with pytest.raises(ArtifactError, match="unsafe"):
        sync_codec(url, cache_dir=tmp_path)
    with pytest.raises(ConnectionError, match="cannot reach"):
        sync_codec(f"http://127.0.0.1:{free_port()}", cache_dir=tmp_path, timeout=2)


def test_a_codec_the_client_ships_with_its_edge_bundle_is_used_without_download(
    rest, model_repo: Path, tmp_path: Path
) -> None:
    """The torch-free client follows a server that switches between codecs it ships."""
    import shutil

    from core.edge_codec import EdgeCodec
    from core.edge_export import check_faces, export_edge

    url, reg = rest
    shipped = tmp_path / "shipped"
    shutil.copytree(model_repo, shipped)
    codec, _, where = sync_codec(url, cache_dir=tmp_path / "cache", shipped=shipped)
    assert not isinstance(codec, EdgeCodec)  # no bundle there: downloaded, torch codec
    assert where == tmp_path / "cache" / "tiny-codec" / "2"
    export_edge(shipped / "tiny-codec" / "2", *check_faces(None, 2))
    reg.hits.clear()
    codec, manifest, where = sync_codec(url, cache_dir=tmp_path / "cache", shipped=shipped)
    assert manifest.ref == "tiny-codec/2"
    assert isinstance(codec, EdgeCodec) and where == shipped / "tiny-codec" / "2"
    assert codec.codec_id_hex == reg.manifest["codec_id"]
    assert not any(h.endswith(("/download", "/weights")) for h in reg.hits)
