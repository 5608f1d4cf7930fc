"""OpenMP's wait policy for processes whose torch work runs off the main thread.

torch's CPU kernels (ATen's ``parallel_for``, oneDNN's convolutions) run on GNU OpenMP
(libgomp). Between two parallel regions libgomp's helper threads spin for a while
(``GOMP_SPINCOUNT``, 300,000 by default) before they sleep on a futex, so the next region of a
network starts at once. But libgomp counts every thread it manages, the initial thread
included, and when that count exceeds the CPUs it "throttles" the spin to 1,000 turns: each of
a network's ~30 regions then pays a futex wake-up. A server runs its models on a worker thread
(the engine's batch worker), so on any machine where torch's intra-op threads equal the cores
(torch's default) the count is cores + 1 and every batch is throttled: a batch of 8 faces took
19 ms instead of 13 here, and a ResNet-18 forward on a worker thread 16.5 ms against 9.5 on the
main thread (docs/SERVING.md "Speed", with the commands).

``OMP_WAIT_POLICY=ACTIVE`` with an explicit ``GOMP_SPINCOUNT`` makes libgomp use that count
throttled or not: the helpers spin as long as they would on the main thread, then sleep (an
idle server uses no CPU; ACTIVE alone would spin for minutes). libgomp reads its environment
once, when torch loads it, so this must run before ``import torch``: ``fercomp`` commands call
it first thing, the benchmarks at package import. A user's own OpenMP tuning wins: when either
variable is already set, nothing is changed. Spinning assumes each intra-op thread has a CPU:
where a CPU quota is below the cores torch sees, size its threads to the quota
(``OMP_NUM_THREADS``, as deploy/k8s/deployment.yaml does), or the helpers spin away the quota.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

#: libgomp's own default spin count, kept whatever the thread count.
OPENMP_WAIT = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "300000"}


def configure_openmp_wait(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OPENMP_WAIT`` in the environment unless the user set either variable.

    Returns True when the process runs with it: set here (or by the user, to the same values)
    before torch was imported. False when torch was already loaded (libgomp has read its
    environment; child processes still get the setting) or the user chose otherwise."""
    env = os.environ if environ is None else environ
    if not any(k in env for k in OPENMP_WAIT):
        env.update(OPENMP_WAIT)
    ours = all(env.get(k) == v for k, v in OPENMP_WAIT.items())
    return ours and "torch" not in sys.modules
