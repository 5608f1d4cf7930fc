"""numpy's BLAS on one thread: the float64 hyper path's products are small (one face's z
through h_s, core/latent_tables.py), too small to split across cores, and OpenBLAS's pthreads
pool busy-waits (``sched_yield``) after each call. In the server that spin took one of this
2-core machine's cores away from the networks (perf: 94 % of a core in ``blas_thread_server``
under unary load; what one thread is worth per path: ``python -m benchmarks.served_ab --knob
blas``, figures in docs/SERVING.md "Speed"); on the edge it made a one-face encode 10x slower on
a busy machine (docs/CLIENT.md).

Set once per process, at start (``fercomp`` commands, ``service.app.Server``): a per-call
limit would cost more than the products. Only the BLAS numpy loaded is touched, through
threadpoolctl (the library scikit-learn uses for the same job): torch's intra-op threads
(OpenMP, its own statically linked BLAS) keep ``torch.set_num_threads``.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

BLAS_THREADS = 1


def limit_blas_threads(threads: int = BLAS_THREADS) -> None:
    """Limit every BLAS library loaded in this process (numpy's OpenBLAS) to ``threads``.
    Idempotent; a BLAS loaded later is not affected (numpy loads its own at import, before)."""
    import numpy  # noqa: F401  # its BLAS must be loaded to be limited

    threadpool_limits(limits=threads, user_api="blas")
