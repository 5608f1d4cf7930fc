"""Server configuration: one pydantic-settings model, read from ``FERCOMP_*`` variables.

Validation is fail-fast: a bad combination (e.g. an admin API reachable from the network with no
token) is refused when the settings are built, before any model is loaded or port is bound.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.artifacts import bundled_models_dir
from service.secret_files import SecretFileProblem, SecretFileSource

# Settings that may also come from the file FERCOMP_<FIELD>_FILE names (a Docker secret, a
# Kubernetes Secret volume): service/secret_files.py.
SECRET_FILE_FIELDS = ("db_url", "admin_token")

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    h = host.strip().strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a hostname that could resolve anywhere: treat as exposed


class Settings(BaseSettings):
    """All server settings; every field can be set with ``FERCOMP_<FIELD>`` (upper case), and
    the secrets (SECRET_FILE_FIELDS) also with ``FERCOMP_<FIELD>_FILE``, a file holding it."""

    # hide_input_in_errors: a refused value may be a secret (db_url with its password, the
    # admin token); errors name the field and say why, without echoing what was given.
    model_config = SettingsConfigDict(
        env_prefix="FERCOMP_",
        extra="ignore",
        validate_default=True,
        frozen=True,
        hide_input_in_errors=True,
    )

    # -- network ------------------------------------------------------------------------
    host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="0 picks a free port")
    http_port: int = Field(default=8000, ge=0, le=65535, description="0 picks a free port")
    grpc_workers: int = Field(
        default=32, ge=2, le=1024, description="gRPC handler threads (must exceed max_streams)"
    )
    max_payload_bytes: int = Field(default=1 << 20, ge=64, description="largest accepted bitstream")
    # Decode cost grows with the *declared* H*W, not with the bytes sent: 128 (the client sends
    # 48x48 faces) keeps a 50-byte request from buying seconds of CPU (docs/SECURITY.md).
    max_image_side: int = Field(default=128, ge=1, le=4096, description="largest decoded H or W")
    grpc_max_message_bytes: int = Field(
        default=4 << 20,
        ge=1024,
        le=64 << 20,
        description="largest gRPC message the transport reads; bitstreams between "
        "max_payload_bytes and this get INVALID_ARGUMENT payload_too_large, larger messages the "
        "transport's RESOURCE_EXHAUSTED",
    )

    # -- admission control: open streams each hold a handler thread (and a reader thread)
    #    for their whole life, so they are capped below grpc_workers; the threads above the
    #    cap stay free for unary calls, ListModels and quick refusals ----------
    # The sync gRPC server queues calls for a handler thread without limit; past this many
    # FerService calls (running + waiting for a thread) new ones are refused at once with
    # RESOURCE_EXHAUSTED, so a unary flood is refused fast instead of waiting tens of seconds.
    # Health checks and reflection are outside this budget, on threads of their own
    # (service/admission.py): a busy server still answers its probes.
    grpc_max_concurrent_rpcs: int = Field(
        default=64,
        ge=2,
        le=65536,
        description="concurrent FerService calls, running or waiting for a thread "
        "(>= grpc_workers); health checks and reflection are not counted",
    )
    max_streams: int = Field(
        default=16, ge=1, description="concurrent ClassifyStream calls; more get RESOURCE_EXHAUSTED"
    )
    stream_max_in_flight: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="items per stream submitted but not yet answered; past it the server stops "
        "reading the stream (HTTP/2 flow control pushes back on the client)",
    )

    # -- transport security: TLS on gRPC and REST; with tls_client_ca, gRPC needs client
    #    certificates signed by that CA (mutual TLS for edge clients) --------------------
    tls_cert: Path | None = Field(default=None, description="PEM server certificate (chain)")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    tls_client_ca: Path | None = Field(
        default=None, description="PEM CA that signs client certificates (gRPC mutual TLS)"
    )

    # -- models ---------------------------------------------------------------------------
    models_dir: Path = Field(default_factory=bundled_models_dir)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Synthesis g_s and the classifier only; the entropy path stays float64 on the CPU.
    inference_precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description="auto: bf16 autocast + channels_last where the device has native bf16 "
        "(CPU AVX512-BF16/AMX, CUDA Ampere+), else fp32; bf16 / fp32 force it",
    )
    # What a server loads at start-up (a swap loads anything else the repository has, on
    # demand): "release" = the artifacts models_dir/release.json names (a deployment's set:
    # docs/MODELS.md), falling back to "all" where there is no release.json; "all" = every
    # codec version in the repository (research: old bitstreams of any version decode);
    # "default" = defaults.json's pair only.
    preload_codecs: Literal["release", "all", "default"] = "release"
    pair_classifiers: bool = Field(
        default=True,
        description="read a jointly trained codec's faces with the classifier it was trained "
        "with (its manifest's paired_classifier, loaded beside it); false: every face goes to "
        "the active classifier",
    )
    # Entropy decoding (native code on untrusted bytes) in a supervised child process, so a
    # crash there cannot take the server down (service/decode_worker.py).
    decode_isolation: Literal["process", "inline"] = "process"
    decode_threads: int = Field(
        default=1, ge=1, le=64, description="threads of the decoder process"
    )
    decode_v1_prestart: bool = Field(
        default=False,
        description="start the format-v1 decoder process at start-up (~1.3 GB, seconds); "
        "false: on the first v1 face (format v2, what clients write, decodes in-process)",
    )
    # Average each face with its mirror image (flip TTA): mirror-consistent predictions.
    tta_flip: bool = True

    gc_freeze: bool = Field(
        default=True,
        description="freeze the loaded server's objects out of the garbage collector's full "
        "passes (service/heap.py): no ~260 ms pause of every request each 10-40 s under load",
    )

    # -- batching / queueing --------------------------------------------------------------
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_queue_delay_ms: float = Field(default=5.0, ge=0.0, le=10_000.0)
    max_queue_size: int = Field(default=1024, ge=1)
    request_timeout: float = Field(default=10.0, gt=0.0, description="seconds, per request")

    # -- prediction store: the SQLite file db_path, or PostgreSQL at db_url (a fleet) -------
    db_path: Path = Path("fercomp-predictions.sqlite3")
    db_url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:password@host:port/dbname: the PostgreSQL store every "
        "replica shares (db_path is then unused); unset: the SQLite file db_path. A secret: "
        "logs show it with the password as ***",
    )
    store_buffer_size: int = Field(
        default=10_000, ge=1, description="writes queued for the next group commit; beyond: 429"
    )
    store_synchronous: Literal["normal", "full"] = Field(
        default="full",
        description="sqlite synchronous: full = fsync each group commit (survives power loss); "
        "normal = no fsync (survives a process crash, not an OS crash)",
    )

    # -- fleet: replicas converge to the desired models in the shared store (service/fleet) --
    instance_id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",  # printable ASCII, no spaces: it is a table key and a log field
        description="this replica's name in the fleet state (default: the hostname, which is "
        "the pod name on Kubernetes and the task's container id on Swarm); unique per replica",
    )
    fleet_enabled: bool = Field(
        default=True,
        description="follow rollouts (POST /v1/fleet/rollout) and report to the fleet state",
    )
    fleet_poll_s: float = Field(
        default=2.0, gt=0.0, le=300.0, description="seconds between reads of the desired models"
    )
    fleet_retry_s: float = Field(
        default=60.0,
        ge=0.0,
        le=86_400.0,
        description="seconds before a replica retries a rollout it failed to apply (a newer "
        "rollout is tried at once)",
    )

    # -- admin API ------------------------------------------------------------------------
    admin_token: SecretStr | None = None
    admin_auth_disabled: bool = False

    # -- swap accuracy guard --------------------------------------------------------------
    canary_data: Path | None = None
    canary_margin: float = Field(default=0.02, description="allowed accuracy drop (absolute, 0..1)")
    canary_size: int = Field(default=512, ge=1)

    # -- process --------------------------------------------------------------------------
    shutdown_grace: float = Field(
        default=10.0, ge=0.0, description="seconds in-flight calls may finish"
    )
    shutdown_delay: float = Field(
        default=0.0,
        ge=0.0,
        description="seconds to stay up while reporting NOT_SERVING before stopping",
    )
    log_level: str = "INFO"
    log_json: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Before the environment: X_FILE's value, or why it cannot be used, wins over X.
        secret_files = SecretFileSource(settings_cls, SECRET_FILE_FIELDS)
        return init_settings, secret_files, env_settings, dotenv_settings, file_secret_settings

    @field_validator(*SECRET_FILE_FIELDS, mode="before")
    @classmethod
    def _secret_file_readable(cls, v: object) -> object:
        if isinstance(v, SecretFileProblem):
            raise ValueError(v.message)  # names the variable and the path, not the content
        return v

    @field_validator("admin_token")
    @classmethod
    def _empty_token_is_none(cls, v: SecretStr | None) -> SecretStr | None:
        # FERCOMP_ADMIN_TOKEN="" is a common mistake; it must not mean "the empty token".
        return v if v is not None and v.get_secret_value().strip() else None

    @field_validator("db_url")
    @classmethod
    def _postgres_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None  # FERCOMP_DB_URL="": SQLite, as when unset
        from service.store.urls import check_postgres_url

        check_postgres_url(v.get_secret_value().strip())
        return SecretStr(v.get_secret_value().strip())

    @field_validator("models_dir")
    @classmethod
    def _models_dir_exists(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"models_dir {v} is not a directory (set FERCOMP_MODELS_DIR)")
        return v

    @field_validator("tls_cert", "tls_key", "tls_client_ca")
    @classmethod
    def _pem_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} is not a file")
        return v

    @field_validator("canary_data")
    @classmethod
    def _canary_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"canary_data {v} is not a file")
        return v

    @model_validator(mode="after")
    def _check_combination(self) -> Settings:
        if self.grpc_port and self.grpc_port == self.http_port:
            raise ValueError(f"grpc_port and http_port are both {self.grpc_port}")
        if self.grpc_max_concurrent_rpcs < self.grpc_workers:
            raise ValueError(
                f"grpc_max_concurrent_rpcs ({self.grpc_max_concurrent_rpcs}) must be at least "
                f"grpc_workers ({self.grpc_workers}), or handler threads could never be used"
            )
        if self.max_streams >= self.grpc_workers:
            raise ValueError(
                f"max_streams ({self.max_streams}) must be below grpc_workers "
                f"({self.grpc_workers}): the difference is what unary calls can always use"
            )
        if self.grpc_max_message_bytes < self.max_payload_bytes + 4096:
            raise ValueError(
                "grpc_max_message_bytes must be at least max_payload_bytes + 4096 (a message "
                "carries the bitstream plus ids)"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key as well")
        if self.admin_token is None and not self.admin_auth_disabled and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is reachable from the network but FERCOMP_ADMIN_TOKEN is "
                "not set: model swap/rollback would be open to anyone. Set FERCOMP_ADMIN_TOKEN "
                "(or FERCOMP_ADMIN_TOKEN_FILE, a file holding it), or "
                "FERCOMP_ADMIN_AUTH_DISABLED=true if that is really intended."
            )
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def insecure_exposure(self) -> bool:
        """Plaintext on an address other machines can reach: allowed (TLS may terminate in a
        proxy or mesh in front), but ``Server.start`` warns loudly."""
        return not self.tls and not is_loopback(self.host)

    @property
    def admin_open(self) -> bool:
        """Admin endpoints need no token (loopback without a token, or explicitly disabled)."""
        return self.admin_token is None or self.admin_auth_disabled

    def resolved_device(self) -> str:
        """``auto`` -> cuda when available; ``cuda`` without a GPU is an error."""
        import torch  # lazy: settings are also validated by tools that never load models

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device=cuda requested but no CUDA device is available")
        return self.device

    def resolved_precision(self, device: str | None = None) -> Literal["bf16", "fp32"]:
        """``inference_precision`` on ``device`` (default: ``resolved_device()``); ``auto`` ->
        bf16 where the device computes bf16 natively (service/precision.py)."""
        from service.precision import resolve_precision  # lazy: imports torch

        return resolve_precision(self.inference_precision, device or self.resolved_device())
