"""Cheap per-snapshot summaries ("signals") of every member, for early warning of a capability jump (grokking).

Switched on by ``tracking.track_signals``. At every snapshot step ``models.train`` calls the jitted function of
``make_signals`` (mapped over members like the train step) and the writer thread stores its output as
``signals/step_NNNNNN.npz`` (name -> ``(members, ...)``, ``models.run_folder.write_signals``). Each output is a pure
function of the member's parameters at that step, its initial parameters (regenerated from its key) and fixed
random draws, so a resumed run recomputes them bit-identically. Readers turn them into causal trajectories
(``theory_checks.early_warning``).

Stored per member (``P`` = modulus of a modular task, ``m = P // 2 + 1`` Fourier modes over the residues):

- ``sketch (K,)``: ``S theta`` for the flattened parameter vector ``theta (D,)`` and a fixed Gaussian ``S (K, D)``
  with entries ``N(0, 1 / K)`` (``K = tracking.signals_sketch_dim``), shared by all members. Differences of sketches
  are sketches of parameter updates, ``S (theta_t - theta_s)``, whose inner products estimate the updates' inner
  products to relative error about ``sqrt(2 / K)`` (Johnson-Lindenstrauss; Achlioptas 2003). Readers form the
  Gram matrix of a rolling window of updates from them (the update spectrum of Xu 2026, arXiv:2603.15678).
- ``fourier_embed (m,)``, ``fourier_unembed (m,)`` (modular tasks only): the fraction of ``||dW||_F^2`` of the
  residue rows of ``dW = W - W_0`` of the token embedding (``(P, d)``; the unembedding's residue columns,
  transposed) in each Fourier mode ``k`` over the residues (``spectral.attribution.fourier_basis``; mode 0 is the
  constant vector). A modular-addition network that generalises concentrates its embedding on a few modes (Nanda et
  al. 2023, arXiv:2301.05217).
- ``dw_embed (V, d)``: ``dW`` of the token embedding itself, for the structure rank (sign-flip null,
  ``spectral.structure``), which is too slow for every snapshot; the writer keeps it at every
  ``tracking.signals_weights_every``-th snapshot only.
- ``trap_<matrix> (4,)``: the top four ESD eigenvalues of the matrix's entries, centred and shuffled by a fixed
  permutation, over the Marchenko-Pastur edge ``sigma^2 (1 + sqrt(q))^2`` with ``sigma^2`` their variance, for
  every weight matrix with ``min(shape) >= 16``. A shuffled matrix has no correlations left, so an eigenvalue well
  above 1 is a correlation trap: a few large entries (Martin & Mahoney 2021, arXiv:1810.01075; Prakash & Martin
  2025, arXiv:2506.04434).
- ``class_ratio ()``: the inter- over intra-class scatter ``tr S_B / tr S_W`` of the last hidden layer (the final
  LayerNorm's output, the unembedding's input) at the last input position, on the member's first two held-out
  batches grouped by their answer token (the non-spectral baseline; the inter/intra-class distance ratio of
  arXiv:2604.20923 in its Fisher form).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import sharding
from models.config import RunConfig
from models.data import Task
from models.steps import over_members
from models.weight_matrices import weight_matrices
from spectral.attribution import fourier_basis
from spectral.esd import after

__all__ = ["SKETCH_STREAM", "TRAP_STREAM", "enabled", "sketch_matrix", "fourier_modes", "hidden_states",
           "fourier_power", "trap_ratios", "class_ratio", "member_signals", "make_signals", "TRAP_MIN_DIM"]

SKETCH_STREAM = 11
"""``fold_in(PRNGKey(train.seed), SKETCH_STREAM)`` draws the sketch matrix shared by every member."""
TRAP_STREAM = 5
"""``fold_in(member_key, TRAP_STREAM)`` draws the member's fixed shuffles (0: init, 1: train, 2: held-out)."""
TRAP_MIN_DIM = 16
TRAP_TOP = 4


def enabled(cfg: RunConfig) -> bool:
  return cfg.tracking.track_signals


def flat(params) -> jax.Array:
  """Every parameter of a member, flattened and concatenated in leaf order, float32 ``(D,)``."""
  return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree_util.tree_leaves(params)])


def sketch_matrix(cfg: RunConfig, dim: int) -> jax.Array:
  """The fixed ``(K, D)`` Gaussian sketch, entries ``N(0, 1/K)``."""
  k = cfg.tracking.signals_sketch_dim
  key = jax.random.fold_in(jax.random.PRNGKey(cfg.train.seed), SKETCH_STREAM)
  return jax.random.normal(key, (k, dim), jnp.float32) / np.sqrt(k)


def fourier_modes(n: int) -> np.ndarray:
  """``(m, n, 2)`` orthonormal bases of the Fourier modes ``0..n//2`` over ``n`` tokens (a one-column mode padded
  with a zero column)."""
  out = np.zeros((n // 2 + 1, n, 2))
  for k in range(n // 2 + 1):
    b = fourier_basis(n, k)
    out[k, :, :b.shape[1]] = b
  return out


def fourier_power(dw_nxd, modes_mxnx2) -> jax.Array:
  """Fraction of ``||dW||_F^2`` (``dW (n, d)``, rows indexed by residues) in each Fourier mode, ``(m,)``."""
  proj = jnp.einsum("mnc,nd->mcd", modes_mxnx2, dw_nxd)
  power = jnp.sum(proj ** 2, axis=(1, 2))
  return power / jnp.maximum(jnp.sum(dw_nxd ** 2), 1e-30)


def trap_ratios(w, key, wait_for=None) -> jax.Array:
  """Top ``TRAP_TOP`` ESD eigenvalues of the centred, entry-shuffled ``w (a, b)`` over their Marchenko-Pastur edge
  ``sigma^2 (1 + sqrt(M / N))^2`` (``sigma^2`` the entries' variance), descending.

  ``wait_for``: an array the eigenvalue kernel must wait for (``spectral.esd.after``), so that a caller can run its
  eigh kernels one at a time; the values do not depend on it."""
  a, b = w.shape
  n, m = max(a, b), min(a, b)
  x = w - jnp.mean(w)
  x = jax.random.permutation(key, x.ravel()).reshape(a, b)
  x = x if a <= b else x.T
  gram = jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST) / n
  ev = jnp.linalg.eigvalsh(after(gram, wait_for))[::-1][:TRAP_TOP]
  edge = jnp.mean(x ** 2) * (1.0 + np.sqrt(m / n)) ** 2
  return ev / jnp.maximum(edge, 1e-30)


def hidden_states(model, tokens_BxL) -> jax.Array:
  """The last hidden layer ``(B, L, D)``: the residual stream after the last block and the final LayerNorm."""
  x = model.embed_tokens(tokens_BxL)
  mask = nnx.make_causal_mask(tokens_BxL)
  for block in model.blocks:
    x = block(x, mask)
  return model.ln_final(x) if model.ln_final is not None else x


def class_ratio(h_BxD, labels_B, num_classes: int) -> jax.Array:
  """``tr S_B / tr S_W``: between-class scatter (class means about the grand mean, weighted by class size) over
  within-class scatter (samples about their class mean)."""
  onehot = jax.nn.one_hot(labels_B, num_classes, dtype=h_BxD.dtype)  # (B, C)
  counts = onehot.sum(axis=0)
  means = (onehot.T @ h_BxD) / jnp.maximum(counts, 1.0)[:, None]
  grand = h_BxD.mean(axis=0, keepdims=True)
  between = jnp.sum(counts * jnp.sum((means - grand) ** 2, axis=1))
  within = jnp.sum((h_BxD - onehot @ means) ** 2)
  return between / jnp.maximum(within, 1e-30)


def member_signals(cfg: RunConfig, graphdef, task: Task) -> Callable:
  """Pure one-member signals ``(params, init_params, key, p, sketch) -> dict`` (module docstring)."""
  modular = cfg.data.kind in ("modular", "random_labels")
  n = cfg.data.modulus if modular else 0
  modes = jnp.asarray(fourier_modes(n), jnp.float32) if modular else None

  def signals(params, init, key, p, sketch):
    out = dict(sketch=sketch @ flat(params))
    mats, mats0 = weight_matrices(params), weight_matrices(init)
    dw = mats["embed.embedding"] - mats0["embed.embedding"]
    out["dw_embed"] = dw
    if modular:
      out["fourier_embed"] = fourier_power(dw[:n], modes)
      if "unembed.kernel" in mats:
        out["fourier_unembed"] = fourier_power((mats["unembed.kernel"] - mats0["unembed.kernel"])[:, :n].T, modes)
    trap_key = jax.random.fold_in(key, TRAP_STREAM)
    previous = None  # one eigh kernel in flight at a time (spectral.esd.after)
    for j, (name, w) in enumerate(sorted(mats.items())):
      if min(w.shape) >= TRAP_MIN_DIM:
        out[f"trap_{name}"] = previous = trap_ratios(w, jax.random.fold_in(trap_key, j), wait_for=previous)
    model = nnx.merge(graphdef, params)
    tokens = jnp.concatenate([task.eval_batch(jax.random.fold_in(key, 2), i, p)[0] for i in range(2)], axis=0)
    h = hidden_states(model, tokens[:, :-1])[:, -1]
    out["class_ratio"] = class_ratio(h, tokens[:, -1], cfg.data.vocab_size)
    return out

  return signals


def make_signals(cfg: RunConfig, graphdef, strategy: str, task: Task, mesh=None) -> Callable | None:
  """Jitted ``(params, init_params, keys, noise_p, sketch) -> signals`` of every member (``None`` when off)."""
  if not enabled(cfg):
    return None
  in_axes = (0, 0, 0, 0, None)
  per_device = over_members(member_signals(cfg, graphdef, task), strategy, in_axes, cfg.train.chunk_size)
  return jax.jit(sharding.shard_over_members(per_device, mesh, in_axes))
