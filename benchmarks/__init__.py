"""Benchmarks: ``python -m benchmarks.<name>`` scripts that print tables (benchmarks/README.md).

The package sets OpenMP's wait policy before any script imports torch, so servers and models
measured here run as ``fercomp serve`` runs them (core/openmp.py).
"""

from core.openmp import configure_openmp_wait

configure_openmp_wait()
