"""numpy's BLAS is limited to one thread by the server and the CLI (core/blas.py)."""

from __future__ import annotations

import subprocess
import sys

from threadpoolctl import threadpool_info

from core.blas import limit_blas_threads

PROBE = """
from threadpoolctl import threadpool_info
import numpy
before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
{call}
after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
print(before, after)
"""


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_limit_blas_threads_sets_numpys_blas_to_one() -> None:
    limit_blas_threads()
    assert _blas_threads(), "numpy's BLAS is not visible to threadpoolctl"
    assert set(_blas_threads()) == {1}


def test_the_cli_limits_blas_threads_in_a_fresh_process() -> None:
    """In a fresh process, where OpenBLAS starts with one thread per core, ``fercomp``'s
    entry point (any command: here ``--help``) leaves it at one."""
    call = "from cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(call=call)],
        capture_output=True, text=True, check=True, env={"OPENBLAS_NUM_THREADS": "2", "PATH": ""},
    )  # fmt: skip
    before, after = out.stdout.strip().splitlines()[-1].split("] [")
    assert before.strip("[") == "2", out.stdout  # the environment asked for two
    assert after.strip("]") == "1", out.stdout
