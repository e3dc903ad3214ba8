"""A small decoder-only transformer in Flax NNX, with stated initial variances.

Pre-LayerNorm blocks ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, learned positional embeddings, untied unembedding.
Initialisation (recorded in the run config through ``ModelConfig.init_scale``): every kernel has iid N(0, s^2 / fan_in)
entries with ``s = init_scale`` and ``fan_in`` the number of input features (``d_model`` for query/key/value/MLP-in and
the unembedding, ``heads * head_dim`` for the attention output, ``mlp_ratio * d_model`` for MLP-out); token and
position embeddings have N(0, s^2 / d_model); biases and LayerNorm offsets 0, LayerNorm scales 1. So at
initialisation each weight matrix is an iid Gaussian matrix whose ESD should follow Marchenko-Pastur with
``sigma^2 = init_variance(name)``.

Shapes use suffixes: B batch, L sequence, D d_model, V vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.config import ModelConfig

_ACTIVATIONS = {"gelu": jax.nn.gelu, "relu": jax.nn.relu, "tanh": jnp.tanh, "linear": lambda x: x}


def normal_fan_in(fan_in: int, scale: float):
  """Initializer drawing iid N(0, scale^2 / fan_in) entries, whatever the kernel's shape."""
  std = scale / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return std * jax.random.normal(key, shape, dtype)

  return init


class Block(nnx.Module):
  """One pre-LayerNorm transformer block with causal multi-head attention and an MLP."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d, s = cfg.d_model, cfg.init_scale
    hidden = cfg.mlp_ratio * d
    self.ln_attn = nnx.LayerNorm(d, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
        num_heads=cfg.num_heads, in_features=d, qkv_features=d, out_features=d, decode=False, keep_rngs=False,
        kernel_init=normal_fan_in(d, s), out_kernel_init=normal_fan_in(d, s), rngs=rngs)
    self.ln_mlp = nnx.LayerNorm(d, rngs=rngs)
    self.mlp_in = nnx.Linear(d, hidden, kernel_init=normal_fan_in(d, s), rngs=rngs)
    self.mlp_out = nnx.Linear(hidden, d, kernel_init=normal_fan_in(hidden, s), rngs=rngs)
    self.activation = cfg.activation

  def __call__(self, x_BxLxD, mask):
    x_BxLxD = x_BxLxD + self.attn(self.ln_attn(x_BxLxD), mask=mask)
    h = _ACTIVATIONS[self.activation](self.mlp_in(self.ln_mlp(x_BxLxD)))
    return x_BxLxD + self.mlp_out(h)


class Transformer(nnx.Module):
  """Decoder-only transformer: tokens (B, L) int -> logits (B, L, V)."""

  def __init__(self, cfg: ModelConfig, vocab_size: int, seq_len: int, *, rngs: nnx.Rngs):
    d, s = cfg.d_model, cfg.init_scale
    self.embed = nnx.Embed(vocab_size, d, embedding_init=normal_fan_in(d, s), rngs=rngs)
    self.pos_embed = nnx.Param(normal_fan_in(d, s)(rngs.params(), (seq_len, d)))
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.ln_final = nnx.LayerNorm(d, rngs=rngs)
    self.unembed = nnx.Linear(d, vocab_size, kernel_init=normal_fan_in(d, s), rngs=rngs)

  def __call__(self, tokens_BxL):
    length = tokens_BxL.shape[-1]
    x = self.embed(tokens_BxL) + self.pos_embed[...][None, :length]
    mask = nnx.make_causal_mask(tokens_BxL)
    for block in self.blocks:
      x = block(x, mask)
    return self.unembed(self.ln_final(x))


def init_variance(name: str, cfg: ModelConfig) -> float:
  """Stated initial entry variance of the weight matrix ``name`` (see the module docstring)."""
  d, s2 = cfg.d_model, cfg.init_scale**2
  if name.endswith("mlp_out.kernel"):
    return s2 / (cfg.mlp_ratio * d)
  return s2 / d
