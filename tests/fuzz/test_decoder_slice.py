"""A short deterministic slice of the decoder fuzzing (the long run is ``make fuzz``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.harness import DEFAULT_CODEC

ROOT = Path(__file__).resolve().parents[2]


def test_structured_inputs_reach_the_decoder_and_never_crash_it() -> None:
    if not DEFAULT_CODEC.is_dir():
        pytest.skip(f"{DEFAULT_CODEC} is not bundled")
    # A child process: a crash in native code must fail this test, not kill pytest.
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.harness", "--slice", "120", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-3000:]}"
    ran, reached = (int(w) for w in done.stdout.split() if w.isdigit())
    assert ran == 120 and reached >= 80  # most inputs get past the CRC to the rANS decoder
