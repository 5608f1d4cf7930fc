"""Check 4's container hardening for `make stack-test`: non-root user, read-only root
filesystem, only the named data directory writable."""

from __future__ import annotations

import json
import subprocess

from stack_io import check, run


def check_hardening(container: str, uid: str, writable: str | None) -> None:
    info = json.loads(run(["docker", "inspect", container]))[0]
    ro = info["HostConfig"]["ReadonlyRootfs"]
    user = run(["docker", "exec", container, "id", "-u"]).strip()
    probe = subprocess.run(["docker", "exec", container, "touch", "/probe"], capture_output=True)
    refused = "refused" if probe.returncode else "ALLOWED"
    detail = f"uid {user}, ReadonlyRootfs={ro}, write to / {refused}"
    ok = ro and user == uid and probe.returncode != 0
    if writable:
        w = subprocess.run(
            [
                "docker",
                "exec",
                container,
                "sh",
                "-c",
                f"touch {writable}/.probe && rm {writable}/.probe",
            ],
            capture_output=True,
        )
        ok = ok and w.returncode == 0
        detail += f", {writable} {'writable' if w.returncode == 0 else 'NOT writable'}"
    check(4, ok, f"{container}: {detail}")
