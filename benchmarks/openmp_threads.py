"""Why core/openmp.py: one forward of the served classifier (flip TTA, the server's precision),
timed on the main thread, on a worker thread (where the server's engine runs it), and on a
worker thread after the main thread has used OpenMP too (the server loads and warms its models
on the main thread) - each in a fresh child process, with libgomp's default wait and with the
one ``fercomp`` sets (libgomp reads its environment once, at load).

    .venv/bin/python -m benchmarks.openmp_threads --faces 8 --data ../shared/data/fer2013.npz

libgomp throttles its helpers' spin to 1,000 turns once it manages more threads than there are
CPUs; with torch's default of one intra-op thread per core, any thread but the main one puts it
there, and each parallel region then ends in a futex sleep (docs/SERVING.md "Speed").
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.common import (
    OPENMP_WAITS,
    add_common_args,
    benchmark_parser,
    finish,
    openmp_child_env,
    run_child,
    write_json,
)

MODES = ("main thread", "worker thread", "worker, after the main thread",
         "worker, after a thread that ended")  # fmt: skip
COLUMNS = [
    ("mode", "where the forward runs"),
    *[(w, f"{w}: ms") for w in OPENMP_WAITS],
    ("ratio", "ratio"),
    ("idle", "CPU s in the idle second after (each setting)"),
]


def in_thread(fn: Callable[[], None]) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()


def child(
    mode: str, models: Path | None, faces: int, data: Path | None, repeat: int, out: Path
) -> None:
    """One mode, timed in this process: median ms of ``repeat`` forwards."""

    from benchmarks.common import load_faces
    from core.artifacts import ModelRepository, bundled_models_dir, load_classifier
    from service.model_api import classify
    from service.precision import resolve_precision

    repo = ModelRepository(models or bundled_models_dir())
    clf = load_classifier(repo.path(repo.defaults()["classifier"]), "cpu")[0].folded()  # served
    precision = resolve_precision("auto", "cpu")
    images, _ = load_faces(faces, data)
    times: list[float] = []

    def run() -> None:
        for i in range(repeat + 5):  # 5 untimed: oneDNN's primitive cache, the thread team
            t = time.perf_counter()
            classify(clf, images, precision, True)
            if i >= 5:
                times.append(time.perf_counter() - t)

    if mode == "main thread":
        run()
    elif mode == "worker thread":
        in_thread(run)
    elif mode == "worker, after the main thread":
        classify(clf, images, precision, True)  # the main thread's team first, as at server start
        in_thread(run)
    else:
        in_thread(lambda: classify(clf, images, precision, True))  # a team whose thread is gone
        in_thread(run)
    # Then idle: whatever its helpers still spin after the last forward, over one second.
    before = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(1.0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    idle = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    write_json(out, {"ms": 1e3 * statistics.median(times), "idle_cpu_s": idle})


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.openmp_threads", __doc__)
    add_common_args(p, faces=8, quality=False)
    p.add_argument("--repeat", type=int, default=40, help="timed forwards per measurement")
    p.add_argument("--mode", action="append", choices=MODES, help="default: all four")
    p.add_argument("--child", choices=MODES, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        assert args.json is not None
        child(args.child, args.models, args.faces, args.data, args.repeat, args.json)
        return 0
    rows = []
    common = ["--faces", str(args.faces), "--repeat", str(args.repeat)]
    for opt in ("models", "data"):
        if getattr(args, opt) is not None:
            common += [f"--{opt}", str(getattr(args, opt))]
    for mode in args.mode or MODES:
        row: dict[str, object] = {"mode": mode}
        idle: list[str] = []
        for wait in OPENMP_WAITS:
            child_args = ["--child", mode, *common]
            measured = run_child("benchmarks.openmp_threads", child_args, openmp_child_env(wait))
            row[wait] = measured["ms"]
            idle.append(f"{measured['idle_cpu_s']:.2f}")
        a, b = (row[w] for w in OPENMP_WAITS)
        row["ratio"] = float(a) / float(b)  # type: ignore[arg-type]
        row["idle"] = " / ".join(idle)
        rows.append(row)
    print(f"the default classifier, {args.faces} faces per forward (flip TTA: {2 * args.faces} "
          f"images); ratio = libgomp default / active")  # fmt: skip
    return finish("openmp_threads", argv, COLUMNS, rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
