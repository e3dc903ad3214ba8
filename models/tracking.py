"""Jacobian and Hessian spectra of every ensemble member, tracked on the training loop's snapshot schedule.

Switched on by the ``tracking`` config section (``models.config.TrackingConfig``, all off by default). At every
snapshot step ``models.train`` calls the jitted function of ``models.steps.make_tracking`` (this module's
``member_tracking``, mapped over members like the train step) and queues ``write_tracking`` on its writer thread.

Probes. Member ``i`` with key ``k_j`` (``models.members.member_key``) draws its probe sequences from the training
distribution of its own task and knob ``p`` with the stream ``fold_in(k_j, PROBE_STREAM)``: batches ``0, 1, ...``
of ``data.batch_size`` sequences, concatenated. They depend on nothing that training changes, so they are the same
at every snapshot (and on resume). The Hessian uses batch 0 (one training-sized batch, with the task's target
weights); the Jacobians use its first ``tracking.jacobian_probe_batch`` sequences (more batches when that exceeds
``data.batch_size``). The Lanczos start and Hutch++ probes come from ``fold_in(k_j, RANDOM_STREAM)``, also fixed.
Streams 0, 1, 2 of ``k_j`` are the member's init, training data and held-out data, so tracking draws nothing that
training uses: with tracking on, every other output of a run is bit-identical to the run with tracking off.

Jacobians (``spectral.jacobian``; Pennington, Schoenholz, Ganguli 2017 for what they mean). For a probe of ``L``
input tokens let ``x_0 (L, D)`` be the residual stream entering block 0 (token + positional embedding,
``Transformer.embed_tokens``) and ``x_{l+1} = block_l(x_l)``. At the position ``t`` (``tracking.jacobian_position``
modulo ``L``; default the last token) the per-token Jacobian of block ``l`` is the ``D x D`` matrix
``J_l = d x_{l+1}[t] / d x_l[t]`` (column convention: rows index outputs), computed by ``jax.jacfwd`` (``D``
forward passes of the block). The whole network's is ``J_net = d x_n[t] / d x_0[t]``, from the embedding output
to the residual stream after the last block, before the final LayerNorm and the unembedding (so it is square and
comparable to the blocks; the final LayerNorm would only add two exact zeros, along the mean and ``x`` directions).
Because attention is causal, ``x_{l+1}[t]`` depends on ``x_l[s]`` only for ``s <= t``, so every chain-rule path from
``x_0[t]`` to ``x_n[t]`` stays at position ``t`` and ``J_net = J_{n-1} ... J_1 J_0`` exactly: it is computed as that
product (no extra passes through the model); ``tests/test_tracking.py`` checks it against a direct ``jax.jacfwd``
of the whole network. Stored: the singular values, descending, of ``J_l`` under the name ``blocks.<l>`` and of
``J_net`` under ``network``, each ``(probes, D)`` per member (``(members, probes, D)`` in the run folder), float32
(SVD on device, the accelerated path).

Hessian (``spectral.hessian``). ``H`` is the Hessian of the training loss (the mean next-token cross-entropy of
``models.steps.loss_and_accuracy``, the function the optimiser sees) in all parameters, at the member's parameters,
on its probe batch 0. Recorded: the top ``k = tracking.hessian_top_k`` Ritz values (largest algebraic first) of
``tracking.hessian_lanczos_steps`` Lanczos steps with full reorthogonalisation (isolated outliers converge fast; a
Ritz value never exceeds the true ``lambda_max`` and each lies within its residual norm of an eigenvalue), and
``tr H`` by Hutch++ with ``tracking.hessian_trace_matvecs`` products (rounded down to a multiple of 3) and the
standard error of its Hutchinson part. Rows in metrics.csv: ``hessian_top_1 .. hessian_top_k``,
``hessian_trace`` and ``hessian_trace_se``, layer ``""``.
"""

from __future__ import annotations

import pathlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import run_folder
from models.config import RunConfig
from models.data import Task
from spectral import hessian as hs
from spectral import jacobian as jc
from spectral.esd import after

__all__ = ["PROBE_STREAM", "RANDOM_STREAM", "enabled", "probe_batch", "jacobian_matrices", "jacobian_spectra",
           "hessian_spectra", "member_tracking", "tracking_rows", "write_tracking"]

PROBE_STREAM = 3
"""``fold_in(member_key, PROBE_STREAM)`` draws the member's probe sequences (0: init, 1: train, 2: held-out)."""
RANDOM_STREAM = 4
"""``fold_in(member_key, RANDOM_STREAM)`` draws the Lanczos start vector and the Hutch++ probes."""

LossFn = Callable  # (params, tokens_BxL1, weights_L | None) -> scalar training loss


def enabled(cfg: RunConfig) -> bool:
  """Whether the run tracks anything beyond the weight spectra."""
  return cfg.tracking.track_jacobian or cfg.tracking.track_hessian


def probe_batch(cfg: RunConfig, task: Task, key: jax.Array, p, num: int) -> jax.Array:
  """The member's first ``num`` probe sequences, int32 ``(num, L + 1)``: training batches ``0, 1, ...`` of the
  stream ``fold_in(key, PROBE_STREAM)``, concatenated (pure in ``key`` and ``p``, so it is vmappable)."""
  stream = jax.random.fold_in(key, PROBE_STREAM)
  batches = -(-num // cfg.data.batch_size)
  tokens = jnp.concatenate([task.train_batch(stream, i, p)[0] for i in range(batches)], axis=0)
  return tokens[:num]


def resolved_position(cfg: RunConfig) -> int:
  """``tracking.jacobian_position`` as an index in ``[0, data.seq_len)``."""
  return cfg.tracking.jacobian_position % cfg.data.seq_len


def jacobian_matrices(model, tokens_L: jax.Array, position: int) -> jax.Array:
  """Per-token block Jacobians ``(n_blocks, D, D)``: ``[l] = d x_{l+1}[position] / d x_l[position]`` on one probe
  of ``L`` input tokens (rows: outputs; see the module docstring)."""
  tokens_1xL = tokens_L[None, :]
  mask = nnx.make_causal_mask(tokens_1xL)
  x_LxD = model.embed_tokens(tokens_1xL)[0]
  jacs = []
  for block in model.blocks:
    fn = lambda x, block=block: block(x[None], mask)[0]
    jacs.append(jc.per_token_jacobian(fn, x_LxD, position))
    x_LxD = fn(x_LxD)
  return jnp.stack(jacs)


def chain(jacs_NxDxD: jax.Array) -> jax.Array:
  """The network's per-token Jacobian ``J_{n-1} ... J_1 J_0`` from the block Jacobians (full float32 precision)."""
  out = jacs_NxDxD[0]
  for j in jacs_NxDxD[1:]:
    out = jnp.matmul(j, out, precision=jax.lax.Precision.HIGHEST)
  return out


def jacobian_spectra(model, tokens_PxL: jax.Array, position: int) -> dict[str, jax.Array]:
  """Singular values (descending) per probe: ``blocks.<l>`` and ``network`` -> ``(P, D)`` for ``P`` probes of
  ``L`` input tokens each."""
  jacs = jax.vmap(lambda t: jacobian_matrices(model, t, position))(tokens_PxL)  # (P, n, D, D)
  network = jax.vmap(chain)(jacs)
  svals = jnp.linalg.svd(jnp.concatenate([jacs, network[:, None]], axis=1), compute_uv=False)  # (P, n + 1, D)
  names = [f"blocks.{l}" for l in range(jacs.shape[1])] + ["network"]
  return {name: svals[:, i] for i, name in enumerate(names)}


def hessian_spectra(cfg: RunConfig, loss_fn: LossFn, params, tokens_BxL1, weights, key,
                    wait_for=None) -> dict[str, jax.Array]:
  """Top-k Hessian eigenvalues ``(k,)``, Hutch++ trace and its standard error (scalars) of ``loss_fn`` at
  ``params`` on one batch; computed after ``wait_for`` (an array or ``None``), the trace after the eigenvalues
  (``spectral.esd.after``: one LAPACK kernel in flight)."""
  tc = cfg.tracking
  loss = lambda prm, tokens: loss_fn(prm, tokens, weights)
  k_top, k_trace = jax.random.split(key)
  top = hs.hessian_top_eigenvalues(loss, params, after(tokens_BxL1, wait_for), tc.hessian_top_k, k_top,
                                   num_steps=tc.hessian_lanczos_steps)
  trace = hs.hessian_trace(loss, params, after(tokens_BxL1, top), k_trace, num_matvecs=tc.hessian_trace_matvecs)
  return dict(hessian_top=top, hessian_trace=trace.estimate, hessian_trace_se=trace.stderr)


def member_tracking(cfg: RunConfig, graphdef, task: Task, loss_fn: LossFn) -> Callable | None:
  """Pure one-member tracking ``(params, key, p) -> dict`` (``None`` when tracking is off).

  Output: ``jacobian`` (name -> ``(probes, D)``) when ``tracking.track_jacobian``; ``hessian_top (k,)``,
  ``hessian_trace ()`` and ``hessian_trace_se ()`` when ``tracking.track_hessian``. ``loss_fn(params, tokens,
  weights)`` is the training loss; ``key`` is the member's key ``k_j``.
  """
  tc = cfg.tracking
  if not enabled(cfg):
    return None
  position = resolved_position(cfg)
  num = max(tc.jacobian_probe_batch if tc.track_jacobian else 0, cfg.data.batch_size if tc.track_hessian else 0)

  def track(params, key, p):
    tokens = probe_batch(cfg, task, key, p, num)
    out = {}
    if tc.track_jacobian:
      model = nnx.merge(graphdef, params)
      out["jacobian"] = jacobian_spectra(model, tokens[:tc.jacobian_probe_batch, :-1], position)
    if tc.track_hessian:
      out |= hessian_spectra(cfg, loss_fn, params, tokens[:cfg.data.batch_size], task.weights,
                             jax.random.fold_in(key, RANDOM_STREAM), wait_for=out.get("jacobian", {}).get("network"))
    return out

  return track


def tracking_rows(step: int, out: dict[str, np.ndarray]) -> list[tuple]:
  """Tidy metric rows ``(step, member, "", metric, value)`` of the Hessian part of one snapshot (host arrays)."""
  rows = []
  if "hessian_top" not in out:
    return rows
  for i in range(out["hessian_top"].shape[0]):
    for j, v in enumerate(out["hessian_top"][i]):
      rows.append((step, i, "", f"hessian_top_{j + 1}", v))
    rows.append((step, i, "", "hessian_trace", out["hessian_trace"][i]))
    rows.append((step, i, "", "hessian_trace_se", out["hessian_trace_se"][i]))
  return rows


def write_tracking(run_dir: pathlib.Path, step: int, out: dict) -> None:
  """Store one snapshot's tracking output (host arrays, stacked over members) in the run folder."""
  if "jacobian" in out:
    run_folder.write_jacobians(run_dir, step, out["jacobian"])
  rows = tracking_rows(step, out)
  if rows:
    run_folder.append_metrics(run_dir, rows)
