"""Named subspaces of a transformer, for attributing structured weight directions (``spectral.attribution``).

For each weight matrix (``models.weight_matrices`` names and orientation) ``matrix_subspaces`` gives the named
subspaces on each of its two sides, as bases (rows = that side's dimension):
- residual-stream side (``d_model``): ``dc``, the span of the mean LayerNorm inputs (each mean over a batch and
  all positions: pre-LN, the stream before each block's attention and MLP and before the final LN; post-LN, the
  sums ``x + f(x)`` each LN normalises; without LN, the stream at each block's input and at the output);
  ``positions``, the span of the positional embeddings (``pos_embed^T``, d_model x seq_len); ``tokens``, the span
  of the token embeddings (``embed^T``, d_model x vocab);
- MLP hidden side: ``dc``, the block's mean MLP activation ``act(mlp_in(LN(x)))``;
- vocabulary side (rows of ``embed``, columns of ``unembed``) and position side (rows of ``pos_embed``):
  ``fourier:k`` for ``k = 0..n/2``, the Fourier modes over token ids (or positions);
- attention head side (``heads * head_dim``): none.
``teacher`` bases given by the caller (a planted ground truth) are added on every side whose dimension they fit.
Chance overlaps (``spectral.attribution.chance_overlap``) of ``positions`` and ``tokens`` are large
(``seq_len / d_model``, ``vocab / d_model`` when the spans are full rank): read overlaps against them.

``head_circuits`` gives the per-head products ``W_QK = W_Q W_K^T`` and ``W_OV = W_V W_O`` (d_model x d_model),
invariant to the per-head gauge ``W_Q A, W_K A^-T`` and ``W_V B, B^-1 W_O`` that makes spectra of the factors
arbitrary (Elhage et al. 2021, "A mathematical framework for transformer circuits").
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.transformer import ACTIVATIONS, Transformer
from models.weight_matrices import path_name, weight_matrices
from spectral import attribution


def _captured(model: Transformer, tokens_BxL) -> dict[str, jax.Array]:
  """Outputs of every module method in one forward pass, by dotted path (``blocks.0.attn.__call__``)."""
  _, inter = nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)(tokens_BxL)
  out = {}
  for path, var in nnx.to_flat_state(inter):
    value = var.get_value() if hasattr(var, "get_value") else var
    out[path_name(path)] = value[0] if isinstance(value, tuple) else value
  return out


def _mean_direction(x) -> np.ndarray:
  """Mean over every axis but the last: (..., D) -> (D,), float64."""
  arr = np.asarray(x, dtype=np.float64)
  return arr.reshape(-1, arr.shape[-1]).mean(axis=0)


def activation_means(model: Transformer, tokens_BxL) -> dict[str, np.ndarray]:
  """Mean LayerNorm inputs and mean MLP activations over a batch of tokens.

  Returns:
    ``"ln_inputs"``: (n, d_model), one row per LayerNorm input (or residual-stream point without LN, see the
    module docstring), and ``"mlp_activation.<i>"``: (hidden,) for each block ``i`` with an MLP.
  """
  tokens_BxL = jnp.asarray(tokens_BxL)
  if tokens_BxL.ndim != 2 or not jnp.issubdtype(tokens_BxL.dtype, jnp.integer):
    raise ValueError(f"tokens_BxL: expected a (batch, length) integer array, got {tokens_BxL.dtype} "
                     f"{tokens_BxL.shape}")
  got = _captured(model, tokens_BxL)
  x = got["embed_tokens"]
  points, out = [], {}
  for i, block in enumerate(model.blocks):
    pre = f"blocks.{i}"
    attn = got[f"{pre}.attn.__call__"] if block.has_attn else None
    if block.norm == "pre":
      points.append(x)
      mid = x + attn if attn is not None else x
      if block.has_mlp:
        points.append(mid)
    elif block.norm == "post":
      mid = x
      if attn is not None:
        points.append(x + attn)
        mid = got[f"{pre}.ln_attn.__call__"]
      if block.has_mlp:
        points.append(mid + got[f"{pre}.mlp_out.__call__"])
    else:
      points.append(x)
    if block.has_mlp:
      out[f"mlp_activation.{i}"] = _mean_direction(ACTIVATIONS[block.activation](got[f"{pre}.mlp_in.__call__"]))
    x = got[f"{pre}.__call__"]
  if model.ln_final is not None or all(b.norm == "none" for b in model.blocks):
    points.append(x)
  out["ln_inputs"] = np.stack([_mean_direction(p) for p in points])
  return out


def _side_subspaces(dim_name: str, *, residual: dict, hidden: np.ndarray | None, vocab: int, seq_len: int):
  if dim_name == "residual":
    return dict(residual)
  if dim_name == "hidden":
    return {"dc": hidden[:, None]} if hidden is not None else {}
  if dim_name == "vocab":
    return attribution.fourier_subspaces(vocab)
  if dim_name == "positions":
    return attribution.fourier_subspaces(seq_len)
  return {}


def matrix_sides(name: str) -> tuple[str, str]:
  """Which space each side of the named weight matrix lives in."""
  if name.startswith("embed."):
    return "vocab", "residual"
  if name == "pos_embed":
    return "positions", "residual"
  if name.startswith("unembed."):
    return "residual", "vocab"
  if name.endswith(("attn.query.kernel", "attn.key.kernel", "attn.value.kernel")):
    return "residual", "heads"
  if name.endswith("attn.out.kernel"):
    return "heads", "residual"
  if name.endswith("mlp_in.kernel"):
    return "residual", "hidden"
  if name.endswith("mlp_out.kernel"):
    return "hidden", "residual"
  if ".attn.qk[" in name or ".attn.ov[" in name:
    return "residual", "residual"
  return "other", "other"


def matrix_subspaces(model: Transformer, tokens_BxL, *, teacher: Mapping[str, object] | None = None,
                     include_circuits: bool = True) -> dict[str, tuple[dict, dict]]:
  """Named subspaces on the (left, right) sides of every weight matrix of ``model`` (module docstring).

  Args:
    model: a ``Transformer`` (one member: ``nnx.merge(graphdef, params)``).
    tokens_BxL: a batch of input tokens (batch, length) for the activation means.
    teacher: optional name -> basis of planted ground-truth directions, added to every side of matching dimension
      (names other than ``teacher`` are kept as given).
    include_circuits: also give subspaces for the ``head_circuits`` names.

  Returns:
    matrix name -> (left subspaces, right subspaces), each a dict name -> basis (side dimension, d).
  """
  means = activation_means(model, tokens_BxL)
  params = nnx.state(model, nnx.Param)
  mats = weight_matrices(params)
  pos = np.asarray(model.pos_embed[...], np.float64)
  residual = {"dc": means["ln_inputs"].T, "positions": pos.T,
              "tokens": np.asarray(model.embed.embedding[...], np.float64).T}
  vocab, seq_len = int(model.embed.embedding[...].shape[0]), int(pos.shape[0])
  names = list(mats) + (list(head_circuits(model)) if include_circuits else [])
  out = {}
  for name in names:
    block = name.split(".")[1] if name.startswith("blocks.") else None
    hidden = means.get(f"mlp_activation.{block}")
    sides = []
    for side in matrix_sides(name):
      subs = _side_subspaces(side, residual=residual, hidden=hidden, vocab=vocab, seq_len=seq_len)
      sides.append(subs)
    if teacher:
      shape = mats[name].shape if name in mats else (pos.shape[1], pos.shape[1])
      for side_dim, subs in zip(shape, sides):
        subs.update({k: np.asarray(b) for k, b in teacher.items() if np.shape(b)[0] == side_dim})
    out[name] = (sides[0], sides[1])
  return out


def head_circuits(model_or_params) -> dict[str, jax.Array]:
  """Per-head ``W_QK = W_Q[:, h] W_K[:, h]^T`` and ``W_OV = W_V[:, h] W_O[h]`` (d_model x d_model) of every block.

  Names ``blocks.<i>.attn.qk[head=h]`` and ``blocks.<i>.attn.ov[head=h]``. Accepts a ``Transformer`` or its
  ``nnx.State`` of parameters (one member). Biases are not part of these bilinear maps.
  """
  params = nnx.state(model_or_params, nnx.Param) if isinstance(model_or_params, nnx.Module) else model_or_params
  raw = {path_name(p): (v[...] if isinstance(v, nnx.Variable) else v) for p, v in nnx.to_flat_state(params)}
  out = {}
  blocks = sorted({int(k.split(".")[1]) for k in raw if k.startswith("blocks.") and ".attn." in k})
  for i in blocks:
    pre = f"blocks.{i}.attn"
    wq, wk = raw[f"{pre}.query.kernel"], raw[f"{pre}.key.kernel"]  # (D, H, K)
    wv, wo = raw[f"{pre}.value.kernel"], raw[f"{pre}.out.kernel"]  # (D, H, K), (H, K, D)
    for h in range(wq.shape[1]):
      out[f"{pre}.qk[head={h}]"] = wq[:, h, :] @ wk[:, h, :].T
      out[f"{pre}.ov[head={h}]"] = wv[:, h, :] @ wo[h]
  return out
