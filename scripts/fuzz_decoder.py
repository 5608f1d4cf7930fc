"""Coverage-guided fuzzing of the decode path (atheris), in a child process that may crash.

    python -m scripts.fuzz_decoder --runs 100000 --max-time 3600     # make fuzz
    python -m scripts.fuzz_decoder --codec tests/golden/codec-v1 --runs 100000   # faster codec

The target is ``tests/fuzz/harness.py:one_input`` (structured inputs with a valid CRC, so they
reach entropy decoding and synthesis). libFuzzer runs in a child; if it dies on a signal, its
crash input is kept under ``--out`` and this script exits 1. The summary (inputs run, crashes,
slowest input, peak RSS, wall time) is printed as a table and written to ``--out/summary.json``.
Corpus and artifacts live under ``--out`` (default ``runs/fuzz``, not committed).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import sys, atheris
with atheris.instrument_imports(include=["core"]):
    import core.bitstream, core.codec, core.entropy_guard, core.ans_coding, core.latent_tables
import tests.fuzz.harness as h
h.DEFAULT_CODEC = h.Path(sys.argv.pop(1))
h.VERSIONS = tuple(int(v) for v in sys.argv.pop(1).split(","))
h._codec(str(h.DEFAULT_CODEC))
atheris.Setup(sys.argv, h.one_input)
atheris.Fuzz()
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--max-time", type=int, default=3600, help="seconds")
    ap.add_argument("--codec", default=str(ROOT / "models/face-hyperprior-joint-l0.025/3"))
    ap.add_argument(
        "--format",
        default="1,2",
        help="container versions to build, e.g. 2 (v2 only: no isolation behind it) or 1,2",
    )
    ap.add_argument("--out", default=str(ROOT / "runs/fuzz"))
    ap.add_argument("--rss-limit-mb", type=int, default=4096)
    ap.add_argument("--timeout", type=int, default=20, help="seconds per input")
    a = ap.parse_args(argv)
    out = Path(a.out)
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-c", _CHILD, str(a.codec), a.format, str(corpus),
        f"-runs={a.runs}", f"-max_total_time={a.max_time}", f"-rss_limit_mb={a.rss_limit_mb}",
        f"-timeout={a.timeout}", "-print_final_stats=1", "-report_slow_units=1",
        f"-artifact_prefix={out}/", "-max_len=600",
    ]  # fmt: skip
    t0 = time.time()
    log_path = out / "fuzz.log"
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    text = log_path.read_text(errors="replace")

    def stat(name: str) -> int | None:
        m = re.search(rf"stat::{name}:\s+(\d+)", text)
        return int(m.group(1)) if m else None

    crashes = sorted(str(p) for p in out.glob("crash-*")) + sorted(
        str(p) for p in out.glob("oom-*")
    )
    summary = {
        "codec": a.codec,
        "formats": a.format,
        "exit_status": rc,
        "inputs_run": stat("number_of_executed_units"),
        "peak_rss_mb": stat("peak_rss_mb"),
        "slowest_input_s": stat("slowest_unit_time_sec"),  # libFuzzer rounds to whole seconds
        "execs_per_s": stat("average_exec_per_sec"),
        "crashes": crashes,
        "wall_s": round(time.time() - t0, 1),
        "corpus_files": len(list(corpus.iterdir())),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for k, v in summary.items():
        print(f"{k:<16} {v}")
    return 0 if rc == 0 and not crashes else 1


if __name__ == "__main__":
    sys.exit(main())
