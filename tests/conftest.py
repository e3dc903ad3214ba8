"""Test configuration: strict numerics, a persistent compilation cache, reproducible defaults."""

import os
import pathlib

import jax

_CACHE = pathlib.Path(os.environ.get("LAB_JAX_CACHE", pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"))

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
