"""The token-to-logit map of a trained language model, measured on a batch: what the network predicts after token x.

For a model ``tokens (B, L) -> logits (B, L, V)`` and a batch of sequences, ``M[x, y]`` is the mean logit of ``y``
over every position whose input token is ``x``. For a model whose prediction depends on the last token only (an
MLP-only stack, or the Bayes predictor of a first-order Markov chain) this is the end-to-end map embedding ->
network -> unembedding itself; otherwise it is that map averaged over the batch's contexts. Logits are defined up to
a per-row constant (softmax is shift-invariant), so the map is compared after ``centre_rows_and_columns``, which also
removes the column mean (the unigram / output-bias direction, reported as the "dc" direction).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def centre_rows_and_columns(m):
  """``m - row means - column means + grand mean`` over the last two axes: ``J m J`` with ``J = I - 11^T / n``, the
  part of ``m`` orthogonal to the constant vector on both sides."""
  m = jnp.asarray(m) if isinstance(m, jax.Array) else np.asarray(m)
  return m - m.mean(axis=-1, keepdims=True) - m.mean(axis=-2, keepdims=True) + m.mean(axis=(-2, -1), keepdims=True)


def token_to_logit_map(graphdef, params, tokens_BxL, vocab_size: int) -> tuple[jax.Array, jax.Array]:
  """``(M, counts)``: ``M`` (``V x V``) the mean logits after each input token over the batch, ``counts`` (``V,``)
  how many positions each token filled (rows of tokens that never occur are 0; check ``counts``).

  Pure in its arguments (vmap it over stacked ``params``); ``graphdef`` and ``params`` as ``nnx.split`` returns them.
  """
  logits_BxLxV = nnx.merge(graphdef, params)(tokens_BxL).astype(jnp.float32)
  onehot_BxLxV = jax.nn.one_hot(tokens_BxL, vocab_size, dtype=jnp.float32)
  counts_V = onehot_BxLxV.sum(axis=(0, 1))
  sums_VxV = jnp.einsum("blx,bly->xy", onehot_BxLxV, logits_BxLxV, precision=jax.lax.Precision.HIGHEST)
  return sums_VxV / jnp.maximum(counts_V, 1.0)[:, None], counts_V
