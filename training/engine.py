"""Compatibility re-exports of the former grab-bag module, split by concern (issue 12).

New code imports from the modules themselves: ``training.distributed`` (devices, DDP),
``training.checkpoints`` (seeding, RNG and module state, checkpoint files), ``training.optim``
(optimizers, schedules), ``training.run_log`` (meters, log.csv, progress bar) and
``training.export`` (``git_commit``). Nothing in the tree imports this module; it stays so that
branches written against the old layout keep importing until they are rebased.
"""

from training.checkpoints import (
    cpu_state,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from training.distributed import Dist, init_distributed, resolve_device, shutdown_distributed
from training.export import git_commit
from training.optim import make_optimizer, make_scheduler
from training.run_log import CSVLog, Meter, progress

__all__ = [
    "CSVLog",
    "Dist",
    "Meter",
    "cpu_state",
    "git_commit",
    "init_distributed",
    "load_checkpoint",
    "make_optimizer",
    "make_scheduler",
    "progress",
    "resolve_device",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "shutdown_distributed",
]
