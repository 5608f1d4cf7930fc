"""OpenMP's wait policy is set before torch loads libgomp (core/openmp.py), and a user's own
setting wins."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.openmp import OPENMP_WAIT, configure_openmp_wait

# What libgomp itself read, printed by it at load (OMP_DISPLAY_ENV is OpenMP 5's switch).
PROBE = "{call}\nimport torch\ntorch.ones(1)\n"


def _libgomp_settings(call: str, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(call=call)], capture_output=True, text=True,
        check=True, env={"PATH": "", "OMP_DISPLAY_ENV": "VERBOSE", **env},
    )  # fmt: skip
    found = {}
    for line in out.stderr.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep and key in OPENMP_WAIT:
            found[key] = value.strip("'")
    assert set(found) == set(OPENMP_WAIT), f"libgomp printed no wait settings:\n{out.stderr}"
    return found


def test_sets_both_variables_when_neither_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as in a fresh process
    env: dict[str, str] = {"PATH": "/bin"}
    assert configure_openmp_wait(env) is True
    assert env == {"PATH": "/bin", **OPENMP_WAIT}


@pytest.mark.parametrize("user", [{"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "300000"}])
def test_a_users_openmp_setting_is_left_alone(user: dict[str, str]) -> None:
    env = dict(user)
    assert configure_openmp_wait(env) is False
    assert env == user


def test_too_late_once_torch_is_loaded() -> None:
    import torch  # noqa: F401  # loaded: libgomp has read its environment

    env: dict[str, str] = {}
    assert configure_openmp_wait(env) is False
    assert env == OPENMP_WAIT  # still set, for child processes


def test_the_cli_sets_it_before_any_command_loads_torch() -> None:
    """``fercomp``'s entry point runs first; libgomp, loaded afterwards, reports the policy."""
    call = "from cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _libgomp_settings(call, {}) == OPENMP_WAIT


def test_libgomp_default_without_it() -> None:
    """The control: the same probe without the call reports what libgomp reports when the
    variable is unset, so the test above cannot pass on its own."""
    assert _libgomp_settings("pass", {})["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_benchmarks_package_sets_it() -> None:
    assert _libgomp_settings("import benchmarks", {}) == OPENMP_WAIT


def test_the_users_value_reaches_libgomp() -> None:
    user = {"OMP_WAIT_POLICY": "PASSIVE"}
    assert _libgomp_settings("import benchmarks", user)["OMP_WAIT_POLICY"] == "PASSIVE"
