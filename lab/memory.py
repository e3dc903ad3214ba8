"""A first-order estimate of the device memory one packed ensemble needs (for ``sweep --dry-run``).

Per member: parameters P (float32) held four times over during a step (parameters, gradients, two Adam moments;
SGD with momentum holds one moment, counted the same for a safe estimate), plus the activations kept for the
backward pass, about ``B L (c1 D + c2 H L) num_layers`` floats with ``c1 = 10 + 2 mlp_ratio`` for the residual
stream, LayerNorms, q/k/v/out and the MLP hidden layer and ``c2 = 2`` for attention scores and probabilities.
Members are split over the ``ens`` mesh axis, so the per-device figure divides by the device count (rounded up).
"""

from __future__ import annotations

import math

import jax

from models.config import RunConfig

FLOAT_BYTES = 4


def parameter_count(cfg: RunConfig) -> int:
  from models.members import init_params  # deferred: model construction is only needed here

  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))


def estimate_pack_bytes(cfg: RunConfig, devices: int = 1) -> int:
  m, d = cfg.model, cfg.data
  per_member = 4 * parameter_count(cfg)
  per_member += d.batch_size * d.seq_len * ((10 + 2 * m.mlp_ratio) * m.d_model + 2 * m.num_heads * d.seq_len) \
      * m.num_layers
  members_per_device = math.ceil(cfg.num_members / max(devices, 1))
  return FLOAT_BYTES * per_member * members_per_device
