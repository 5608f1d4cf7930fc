"""fercomp edge client: face crop, learned encoding with rate control, gRPC SDK.

``from client import FerClient`` (or ``client.sdk.FerClient``); submodules are imported on first
use so that e.g. ``client.faces`` does not pull in gRPC. Nothing here needs torch (the edge install,
``pip install 'fercomp[edge]'``, has none; docs/CLIENT.md).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FerClient": "client.sdk",
    "FerClientError": "client.results",
    "Prediction": "client.results",
    "ItemErrorResult": "client.results",
    "result_row": "client.results",
    "EdgeEncoder": "client.encoder",
    "EdgeCodec": "client.edge_codec",
    "load_encoder_codec": "client.edge_codec",
    "BandwidthMeter": "client.bandwidth",
    "prepare_face": "client.faces",
    "sync_codec": "client.sync",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'client' has no attribute {name!r}")
