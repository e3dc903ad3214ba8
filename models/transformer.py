"""A small decoder-only transformer in Flax NNX, with stated initial variances.

Blocks (``ModelConfig.norm``): pre-LayerNorm ``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` with a final LayerNorm
(default); post-LayerNorm ``LN(x + Attn(x))``, ``LN(x + MLP(x))``; or no normalisation ``x + Attn(x)``,
``x + MLP(x)``. ``ModelConfig.block`` drops the MLP (``attn_only``) or the attention (``mlp_only``). Learned
positional embeddings; the unembedding is a separate matrix or, with ``tie_embeddings``, the token embedding's
transpose.

Initialisation (recorded in the run config; ``s = init_scale``; ``fan_in`` the number of input features:
``d_model`` for query/key/value/MLP-in/unembedding and the embeddings, ``heads * head_dim = d_model`` for the
attention output, ``mlp_ratio * d_model`` for MLP-out). Every weight matrix has entry variance ``s^2 / fan_in``
(``init_variance``):
- ``gaussian``: iid N(0, s^2 / fan_in), so its ESD follows Marchenko-Pastur with ``sigma^2 = init_variance``;
- ``orthogonal``: ``s sqrt(N / fan_in) Q`` with ``Q`` Haar-distributed with orthonormal columns (or rows) on the
  fused ``N x M`` matrix (the attention kernels are orthogonalised in their fused ``(d, heads*head_dim)`` form); all
  ``M`` ESD eigenvalues equal ``s^2 / fan_in`` (a point mass, not MP);
- ``flax_default``: Flax's LeCun truncated normal for kernels and normal for embeddings (both variance
  ``1 / fan_in``), multiplied by ``s``.
Biases and LayerNorm offsets 0, LayerNorm scales 1.

Shapes use suffixes: B batch, L sequence, D d_model, V vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.activations import ACTIVATIONS
from models.config import ModelConfig


def normal_fan_in(fan_in: int, scale: float):
  """Initializer drawing iid N(0, scale^2 / fan_in) entries, whatever the kernel's shape."""
  std = scale / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return std * jax.random.normal(key, shape, dtype)

  return init


def orthogonal_fan_in(fan_in: int, scale: float, fuse: str = "last"):
  """Initializer: a Haar orthogonal matrix scaled to entry variance ``scale^2 / fan_in``.

  The kernel is viewed as a matrix ``(shape[0], prod(shape[1:]))`` (``fuse="last"``) or ``(prod(shape[:-1]),
  shape[-1])`` (``fuse="first"``); with ``N >= M`` its sides, ``Q`` (N x M) has orthonormal columns (QR of a Gaussian
  with the signs of R's diagonal fixed, which makes it Haar) and the result is ``scale sqrt(N / fan_in) Q``.
  """

  def init(key, shape, dtype=jnp.float32):
    rows = shape[0] if fuse == "last" else int(np.prod(shape[:-1]))
    cols = int(np.prod(shape)) // rows
    n, m = max(rows, cols), min(rows, cols)
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, m), jnp.float32))
    q = q * jnp.sign(jnp.diagonal(r))[None, :]
    mat = q if rows >= cols else q.T
    return (scale * np.sqrt(n / fan_in) * mat).reshape(shape).astype(dtype)

  return init


def kernel_init(cfg: ModelConfig, fan_in: int, fuse: str = "last", embedding: bool = False):
  s = cfg.init_scale
  if cfg.init == "gaussian":
    return normal_fan_in(fan_in, s)
  if cfg.init == "orthogonal":
    return orthogonal_fan_in(fan_in, s, fuse)
  # Flax's defaults: LeCun truncated normal for kernels, N(0, 1 / features) for embeddings.
  base = normal_fan_in(fan_in, 1.0) if embedding else nnx.initializers.lecun_normal()
  return lambda key, shape, dtype=jnp.float32: s * base(key, shape, dtype)


class Block(nnx.Module):
  """One transformer block: causal multi-head attention and/or an MLP, with pre/post/no LayerNorm."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d = cfg.d_model
    hidden = cfg.mlp_ratio * d
    self.norm, self.activation = cfg.norm, cfg.activation
    self.has_attn, self.has_mlp = cfg.block != "mlp_only", cfg.block != "attn_only"
    if self.has_attn:
      self.ln_attn = nnx.LayerNorm(d, rngs=rngs) if cfg.norm != "none" else None
      self.attn = nnx.MultiHeadAttention(
          num_heads=cfg.num_heads, in_features=d, qkv_features=d, out_features=d, decode=False, keep_rngs=False,
          kernel_init=kernel_init(cfg, d, "last"), out_kernel_init=kernel_init(cfg, d, "first"), rngs=rngs)
    if self.has_mlp:
      self.ln_mlp = nnx.LayerNorm(d, rngs=rngs) if cfg.norm != "none" else None
      self.mlp_in = nnx.Linear(d, hidden, kernel_init=kernel_init(cfg, d), rngs=rngs)
      self.mlp_out = nnx.Linear(hidden, d, kernel_init=kernel_init(cfg, hidden), rngs=rngs)

  def _residual(self, x, f, ln):
    if self.norm == "pre":
      return x + f(ln(x))
    if self.norm == "post":
      return ln(x + f(x))
    return x + f(x)

  def __call__(self, x_BxLxD, mask):
    if self.has_attn:
      x_BxLxD = self._residual(x_BxLxD, lambda h: self.attn(h, mask=mask), self.ln_attn)
    if self.has_mlp:
      mlp = lambda h: self.mlp_out(ACTIVATIONS[self.activation](self.mlp_in(h)))
      x_BxLxD = self._residual(x_BxLxD, mlp, self.ln_mlp)
    return x_BxLxD


class Transformer(nnx.Module):
  """Decoder-only transformer: tokens (B, L) int -> logits (B, L, V)."""

  def __init__(self, cfg: ModelConfig, vocab_size: int, seq_len: int, *, rngs: nnx.Rngs):
    d = cfg.d_model
    self.embed = nnx.Embed(vocab_size, d, embedding_init=kernel_init(cfg, d, "first", embedding=True), rngs=rngs)
    self.pos_embed = nnx.Param(kernel_init(cfg, d, "first", embedding=True)(rngs.params(), (seq_len, d)))
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.ln_final = nnx.LayerNorm(d, rngs=rngs) if cfg.norm == "pre" else None
    self.tied = cfg.tie_embeddings
    if not self.tied:
      self.unembed = nnx.Linear(d, vocab_size, kernel_init=kernel_init(cfg, d), rngs=rngs)

  def embed_tokens(self, tokens_BxL):
    """The residual stream entering the first block: token plus positional embedding, (B, L, D)."""
    length = tokens_BxL.shape[-1]
    return self.embed(tokens_BxL) + self.pos_embed[...][None, :length]

  def logits_from_embeddings(self, x_BxLxD):
    """Logits (B, L, V) from the residual stream entering the first block (the output of ``embed_tokens``)."""
    mask = nnx.make_causal_mask(x_BxLxD[..., 0])
    for block in self.blocks:
      x_BxLxD = block(x_BxLxD, mask)
    if self.ln_final is not None:
      x_BxLxD = self.ln_final(x_BxLxD)
    return self.embed.attend(x_BxLxD) if self.tied else self.unembed(x_BxLxD)

  def __call__(self, tokens_BxL):
    return self.logits_from_embeddings(self.embed_tokens(tokens_BxL))


def init_variance(name: str, cfg: ModelConfig, init_scale: float | None = None) -> float:
  """Stated initial entry variance ``s^2 / fan_in`` of the weight matrix ``name`` (see the module docstring), with
  ``s = init_scale`` (a member's own init scale; default ``cfg.init_scale``).

  The lab's one statement of the rule: ``models.members.init_params`` realises a member's scale by multiplying the
  draw at ``cfg.init_scale`` by ``s / cfg.init_scale``; training records this value per member and matrix in
  run.json (``models.run_writer.run_info``), and readers take it from there (``models.run_folder.Run.init_variance``).
  """
  s = cfg.init_scale if init_scale is None else init_scale
  fan_in = cfg.mlp_ratio * cfg.d_model if name.endswith("mlp_out.kernel") else cfg.d_model
  return s**2 / fan_in
