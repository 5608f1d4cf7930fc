"""`fercomp` entry point: dispatches to subcommands; errors become one line on stderr."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from core.blas import limit_blas_threads
from core.openmp import configure_openmp_wait

# Subcommand modules; each exposes `register(subparsers)` and sets `func` on its parser.
COMMAND_MODULES = (
    "cli.codec_cmds",  # encode, decode, info
    "cli.client_cmds",  # classify, stream
    "cli.serve_cmd",  # serve
    "cli.train_cmds",  # train
    "cli.eval_cmds",  # eval, report
    "cli.models_cmd",  # models
    "cli.fleet_cmds",  # rollout, fleet status
)


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fercomp",
        description="Facial-expression recognition on learned-compressed face images.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that command group is not part of this install
                continue
            raise
        module.register(sub)
    return parser


def quiet_known_warnings() -> None:
    """Silence warnings users can do nothing about; call before anything imports CompressAI."""
    # CompressAI 1.2.8 calls torch.jit.script at import; torch 2.14 warns about it on every run.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)


def main(argv: Sequence[str] | None = None) -> int:
    configure_openmp_wait()  # core/openmp.py: before any command imports torch
    quiet_known_warnings()
    limit_blas_threads()  # core/blas.py: numpy's spinning BLAS pool cost a core
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the exact command line, recorded in result files (e.g. eval JSON)
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the one place that turns exceptions into exit codes
        if os.environ.get("FERCOMP_DEBUG"):
            raise
        code = getattr(e, "code", None)
        prefix = f"error [{code}]" if isinstance(code, str) else "error"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename:
            msg = f"no such file: {e.filename}"
        print(f"fercomp: {prefix}: {msg}", file=sys.stderr)
        return 2 if isinstance(e, ValueError | OSError | CLIError | LookupError) else 1


if __name__ == "__main__":
    sys.exit(main())
