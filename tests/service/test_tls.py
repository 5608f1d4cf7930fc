"""TLS and mutual TLS on the server: certificates made with openssl for a throwaway CA."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from pydantic import ValidationError

from client.channel import make_channel
from proto.fercomp.v1 import fercomp_pb2 as pb
from proto.fercomp.v1 import fercomp_pb2_grpc
from service.app import Server
from service.settings import Settings
from tests.service.conftest import SettingsFactory

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
NAME_OVERRIDE = [("grpc.ssl_target_name_override", "localhost")]


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _issue(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / f"{name}.key",
             "-subj", f"/CN={name}", "-out", d / f"{name}.csr")  # fmt: skip
    _openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / f"{ca}.pem",
             "-CAkey", d / f"{ca}.key", "-CAcreateserial", "-days", "2",
             "-extfile", d / f"{name}.ext", "-out", d / f"{name}.pem")  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=fercomp test CA", "-keyout", d / "ca.key", "-out", d / "ca.pem")  # fmt: skip
    _issue(d, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _issue(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    return d


@contextmanager
def serving(settings: Settings) -> Iterator[Server]:
    server = Server(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=1.0)


def _classify(channel: grpc.Channel, payload: bytes) -> pb.ClassifyResponse:
    stub = fercomp_pb2_grpc.FerServiceStub(channel)
    return stub.Classify(pb.ClassifyRequest(bitstream=payload), timeout=10)


def test_tls_grpc_and_rest(
    pki: Path, make_settings: SettingsFactory, payloads_v1: list[bytes]
) -> None:
    s = make_settings(tls_cert=pki / "server.pem", tls_key=pki / "server.key")
    with serving(s) as server:
        assert server.ports is not None
        target = f"127.0.0.1:{server.ports.grpc}"
        ca = pki / "ca.pem"
        with make_channel(target, root_certificates=ca, options=NAME_OVERRIDE) as ch:
            assert _classify(ch, payloads_v1[0]).classifier_version == "tiny-classifier/1"
        with grpc.insecure_channel(target) as plain, pytest.raises(grpc.RpcError) as e:
            _classify(plain, payloads_v1[0])  # a plaintext client cannot talk to a TLS port
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        trust = ssl.create_default_context(cafile=str(ca))
        r = httpx.get(f"https://localhost:{server.ports.http}/healthz", verify=trust)
        assert r.status_code == 200


def test_mutual_tls_needs_a_client_certificate(
    pki: Path, make_settings: SettingsFactory, payloads_v1: list[bytes]
) -> None:
    s = make_settings(
        tls_cert=pki / "server.pem", tls_key=pki / "server.key", tls_client_ca=pki / "ca.pem"
    )
    with serving(s) as server:
        assert server.ports is not None
        target, ca = f"127.0.0.1:{server.ports.grpc}", pki / "ca.pem"
        with make_channel(target, root_certificates=ca, options=NAME_OVERRIDE) as anon:
            with pytest.raises(grpc.RpcError) as e:
                _classify(anon, payloads_v1[0])
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        with make_channel(
            target,
            root_certificates=ca,
            client_cert=pki / "client.pem",
            client_key=pki / "client.key",
            options=NAME_OVERRIDE,
        ) as ch:
            assert _classify(ch, payloads_v1[0]).classifier_version == "tiny-classifier/1"


def test_tls_settings_are_checked(pki: Path, make_settings: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="together"):
        make_settings(tls_cert=pki / "server.pem")
    with pytest.raises(ValidationError, match="needs tls_cert"):
        make_settings(tls_client_ca=pki / "ca.pem")
    with pytest.raises(ValidationError, match="is not a file"):
        make_settings(tls_cert=pki / "missing.pem", tls_key=pki / "server.key")
