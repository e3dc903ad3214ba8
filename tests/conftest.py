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

# A cold run of the suite (CI: an empty compilation cache) spends most of its time in XLA's LLVM back end, compiling
# hundreds of small programs that then run for milliseconds. LLVM -O0 compiles them about twice as fast: measured side
# by side with empty caches on the shared 2-core VM, tests/test_ensemble.py + tests/test_learning.py took 126 CPU-s
# instead of 276. The programs and their semantics are unchanged (float results agree to rounding), and every
# comparison inside the suite is between programs compiled alike. LAB_TEST_XLA_OPT=1 keeps XLA's default level.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "") and not os.environ.get("LAB_TEST_XLA_OPT"):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402 (after XLA_FLAGS: read when the backend starts)

_CACHE = pathlib.Path(os.environ.get("LAB_JAX_CACHE", pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"))

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
