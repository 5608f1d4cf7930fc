"""``fercomp rollout`` and ``fercomp fleet status``: one model change for every replica.

``rollout`` posts the desired models to one replica (any: they share the store), which every
replica then loads and switches to atomically (docs/DEPLOY.md, "Rolling out a model to the
fleet"); with ``--wait`` it follows ``GET /v1/fleet`` until every live replica serves them
(exit 0), one refuses them, or time runs out (exit 1, with the per-replica table).

Standard library only (urllib), so any install can run it. The admin token comes from
FERCOMP_ADMIN_TOKEN or the file FERCOMP_ADMIN_TOKEN_FILE names, as the server reads it (never
a flag: flags show up in ps).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

POLL_S = 1.0  # between reads of GET /v1/fleet while waiting


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "rollout",
        help="make every server replica serve a codec and/or classifier",
        description="Request a rollout through one replica's REST API; every replica sharing "
        "its store converges to it. Admin token: FERCOMP_ADMIN_TOKEN or FERCOMP_ADMIN_TOKEN_FILE.",
    )
    _server_args(p)
    p.add_argument("--codec", metavar="REF", help='codec "name/version" ("name": newest)')
    p.add_argument("--classifier", metavar="REF", help='classifier "name/version"')
    p.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="follow the rollout until every live replica serves it (exit 0), one refuses it "
        "or SECONDS pass (exit 1)",
    )
    p.set_defaults(func=run_rollout)

    fleet = sub.add_parser("fleet", help="the server fleet's rollout state")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    status = fleet_sub.add_parser("status", help="every live replica: models served, status")
    _server_args(status)
    status.set_defaults(func=run_status)


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        default="http://127.0.0.1:8000",
        metavar="URL",
        help="REST base URL of any replica (default http://127.0.0.1:8000)",
    )
    p.add_argument("--ca", metavar="PEM", help="CA certificate of an https server")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request")
    p.add_argument("--json", action="store_true", help="print the fleet state as JSON")


def admin_token() -> str:
    """FERCOMP_ADMIN_TOKEN, or the content of the file FERCOMP_ADMIN_TOKEN_FILE names (a
    mounted secret); both set is an error, as on the server."""
    value = os.environ.get("FERCOMP_ADMIN_TOKEN", "").strip()
    path = os.environ.get("FERCOMP_ADMIN_TOKEN_FILE", "").strip()
    if value and path:
        raise SystemExit("set FERCOMP_ADMIN_TOKEN or FERCOMP_ADMIN_TOKEN_FILE, not both")
    if not path:
        return value
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(65536).strip()
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"FERCOMP_ADMIN_TOKEN_FILE={path}: cannot read the file ({e})") from None


class Api:
    def __init__(self, args: argparse.Namespace) -> None:
        self.base = args.server.rstrip("/")
        self.timeout = args.timeout
        self.context = ssl.create_default_context(cafile=args.ca) if args.ca else None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        token = admin_token()
        if token and method == "POST":
            headers["Authorization"] = f"Bearer {token}"
        url = self.base + path
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise ConnectionError(f"{method} {url}: HTTP {e.code}: {_detail(e)}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise ConnectionError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None


def _detail(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read())
        text = f"{body['error']}: {body['detail']}"
    except (ValueError, KeyError, TypeError):
        return str(e.reason)
    if e.code == 401:
        text += " (set FERCOMP_ADMIN_TOKEN)"
    return text


def run_rollout(args: argparse.Namespace) -> int:
    if args.codec is None and args.classifier is None:
        raise ValueError("name a --codec, a --classifier, or both")
    api = Api(args)
    body: dict[str, Any] = {"requested_by": f"{getpass.getuser()}@{socket.gethostname()}"}
    body |= {k: v for k, v in (("codec", args.codec), ("classifier", args.classifier)) if v}
    desired = api.call("POST", "/v1/fleet/rollout", body)
    gen = desired["generation"]
    if not args.json:
        print(f"rollout {gen}: codec={desired['codec']} classifier={desired['classifier']}")
    if args.wait is None:
        if args.json:
            print(json.dumps({"rollout": desired}))
        return 0
    fleet, outcome = _follow(api, gen, args.wait)
    if args.json:
        print(json.dumps({"rollout": desired, "outcome": outcome, "fleet": fleet}))
    else:
        print(table(fleet))
        print(outcome)
    return 0 if outcome == "converged" else 1


def _follow(api: Api, gen: int, wait: float) -> tuple[dict[str, Any], str]:
    """Poll until rollout ``gen`` is served everywhere, refused somewhere, overtaken by a newer
    rollout, or ``wait`` seconds have passed; (the last fleet state, what happened)."""
    deadline = time.monotonic() + wait
    while True:
        fleet = api.call("GET", "/v1/fleet")
        newest = (fleet.get("desired") or {}).get("generation", 0)
        if newest != gen:
            return fleet, f"superseded by rollout {newest}"
        if fleet["converged"]:
            return fleet, "converged"
        failed = [i["instance"] for i in fleet["instances"] if i["status"] == "failed"]
        if failed:
            return fleet, f"failed on {', '.join(failed)} (they keep serving their models)"
        if time.monotonic() >= deadline:
            counts = fleet["counts"]
            return fleet, f"not converged after {wait:g}s: {counts['converged']} of " + (
                f"{counts['live']} live replicas converged"
            )
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def run_status(args: argparse.Namespace) -> int:
    fleet = Api(args).call("GET", "/v1/fleet")
    if args.json:
        print(json.dumps(fleet))
    else:
        print(table(fleet))
    return 0


def table(fleet: dict[str, Any]) -> str:
    """The fleet state for a terminal: the desired models, then one line per live replica."""
    d = fleet.get("desired")
    head = (
        f"desired: rollout {d['generation']} codec={d['codec']} classifier={d['classifier']}"
        if d
        else "desired: no rollout yet (each replica serves its defaults)"
    )
    c = fleet["counts"]
    head += f"\n{c['live']} live, {c['converged']} converged, {c['applying']} applying, "
    head += f"{c['failed']} failed, {c['diverged']} diverged: "
    head += "CONVERGED" if fleet["converged"] else "NOT CONVERGED"
    rows = [("INSTANCE", "STATUS", "GEN", "CODEC", "CLASSIFIER", "AGE", "ERROR")]
    now = time.time()
    for i in fleet["instances"]:
        age = f"{max(0.0, now - i['heartbeat_at']):.1f}s"
        rows.append((i["instance"], i["status"], str(i["generation"]), i["codec"],
                     i["classifier"], age, i["error"]))  # fmt: skip
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]) - 1)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1]
             for r in rows]  # fmt: skip
    return head + "\n" + "\n".join(line.rstrip() for line in lines)
