"""Traffic for deploy/stack_test.sh, run inside the client image (fercomp-client) with the
repository's deploy/local mounted at /stack and the test faces at /faces (<expression>/*.png).

  labelled SERVER           every face once, labelled with its folder's expression
  load SERVER SECONDS       faces round robin for SECONDS, 4 calls in flight, no labels

Prints one JSON document: calls sent, failed (client-visible errors, after the client's own
retries), correct, bytes sent, the request ids and the first errors.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from itertools import cycle
from pathlib import Path

from client.sdk import FerClient


def faces(root: Path) -> list[tuple[Path, str]]:
    out = [
        (p, d.name) for d in sorted(root.iterdir()) if d.is_dir() for p in sorted(d.glob("*.png"))
    ]
    if not out:
        raise SystemExit(f"no faces under {root}")
    return out


def labelled(server: str) -> dict:
    items = faces(Path("/faces"))
    with FerClient(server, timeout=30.0) as client:
        res = client.classify_many(
            [p for p, _ in items],
            labels=[lab for _, lab in items],
            concurrency=8,
            return_errors=True,
        )
    ok = [r for r in res if hasattr(r, "expression")]
    return {
        "sent": len(items),
        "failed": len(items) - len(ok),
        "correct": sum(1 for r in ok if r.correct),
        "bytes": sum(r.bytes_sent for r in ok),
        "classifier_versions": sorted({r.classifier_version for r in ok}),
        "request_ids": [r.request_id for r in ok],
        "errors": [r.to_dict() for r in res if not hasattr(r, "expression")][:5],
    }


def load(server: str, seconds: float) -> dict:
    items = cycle(p for p, _ in faces(Path("/faces")))
    lock = threading.Lock()
    stats = {"sent": 0, "failed": 0, "bytes": 0, "errors": []}
    deadline = time.monotonic() + seconds
    with FerClient(server, timeout=30.0) as client:

        def worker() -> None:
            while time.monotonic() < deadline:
                with lock:
                    path = next(items)
                    stats["sent"] += 1
                try:
                    pred = client.classify(path)
                    with lock:
                        stats["bytes"] += pred.bytes_sent
                except Exception as e:
                    with lock:
                        stats["failed"] += 1
                        if len(stats["errors"]) < 5:
                            stats["errors"].append(f"{time.strftime('%H:%M:%S')} {e}")

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return stats


if __name__ == "__main__":
    mode, server = sys.argv[1], sys.argv[2]
    doc = labelled(server) if mode == "labelled" else load(server, float(sys.argv[3]))
    print(json.dumps(doc))
