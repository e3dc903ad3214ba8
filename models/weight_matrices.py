"""Named weight matrices of a model's parameter state, in the lab's naming and orientation conventions.

Names are dotted paths (``blocks.0.attn.query.kernel``). Attention kernels stored by Flax as
``(d_model, heads, head_dim)`` (query/key/value) or ``(heads, head_dim, d_model)`` (out) are fused to
``(d_model, heads * head_dim)`` / ``(heads * head_dim, d_model)``. Every array may carry leading ensemble axes.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

_VECTOR_PARAMS = ("bias", "scale")  # (heads, head_dim) attention biases are vectors, not matrices
_FUSE_FIRST_TWO = ("attn.out.kernel",)
_FUSE_LAST_TWO = ("attn.query.kernel", "attn.key.kernel", "attn.value.kernel")


def path_name(path) -> str:
  return ".".join(str(getattr(p, "key", p)) for p in path)


def weight_matrices(params: nnx.State, ensemble_dims: int = 0) -> dict[str, jnp.ndarray]:
  """Map name -> matrix (..., a, b) for every weight matrix (biases and LayerNorm
  parameters excluded, also the (heads, head_dim) attention biases).

  Args:
    params: ``nnx.State`` of ``nnx.Param`` variables (e.g. ``nnx.state(model, nnx.Param)``), possibly stacked.
    ensemble_dims: number of leading stacked axes (0 for one model, 1 for an ensemble).
  """
  out = {}
  for path, leaf in nnx.to_flat_state(params):
    arr = leaf[...] if hasattr(leaf, "get_value") or isinstance(leaf, nnx.Variable) else leaf
    name = path_name(path)
    core = arr.ndim - ensemble_dims
    if core < 2 or name.rsplit(".", 1)[-1] in _VECTOR_PARAMS:
      continue
    lead = arr.shape[:ensemble_dims]
    if core == 3 and name.endswith(_FUSE_LAST_TWO):
      arr = arr.reshape(*lead, arr.shape[-3], arr.shape[-2] * arr.shape[-1])
    elif core == 3 and name.endswith(_FUSE_FIRST_TWO):
      arr = arr.reshape(*lead, arr.shape[-3] * arr.shape[-2], arr.shape[-1])
    elif core != 2:
      raise ValueError(f"params: parameter {name} has {core} non-ensemble axes; expected a matrix or a known "
                       "attention kernel")
    out[name] = arr
  return out
