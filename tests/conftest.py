"""Test configuration: strict numerics, a persistent compilation cache, reproducible defaults."""

import os
import pathlib

if os.environ.get("PYTEST_XDIST_WORKER"):
  # One worker per core (pytest-xdist, `-n auto` in pyproject.toml): each worker runs XLA and BLAS on one thread, so
  # that the workers do not oversubscribe the cores (a multi-threaded OpenBLAS on small matrices under
  # oversubscription was measured 19x slower in wall time). Read by XLA when its CPU backend starts, after this.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
  from threadpoolctl import threadpool_limits
  threadpool_limits(limits=1)

import jax

_CACHE = pathlib.Path(os.environ.get("LAB_JAX_CACHE", pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"))

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
