"""A plain deep MLP for Jacobian checks at initialisation (Pennington, Schoenholz & Ganguli 2017, arXiv:1711.04735).

``h^l = W^l x^(l-1) + b^l``, ``x^l = phi(h^l)`` for ``l = 1..depth``, all layers ``width x width``; ``W^l`` has
entries of variance ``sigma_w^2 / width`` (``gaussian``: iid normal; ``orthogonal``: ``sigma_w`` times a Haar
orthogonal matrix, the same entry variance) and ``b^l`` iid N(0, sigma_b^2). Its parameters are an ``nnx.State``
like the transformer's, so ``models.weight_matrices`` and ``spectral`` apply unchanged (names ``layers.<l>.kernel``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from models.activations import ACTIVATIONS
from models.transformer import normal_fan_in, orthogonal_fan_in
from spectral import free_probability

MLP_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a in free_probability.ACTIVATIONS)
"""The activations with a mean-field Jacobian prediction (``spectral.free_probability``): the deep MLP's choices."""


@dataclasses.dataclass(frozen=True)
class MLPConfig:
  width: int = 256
  depth: int = 8
  activation: str = "tanh"
  sigma_w: float = 1.0
  sigma_b: float = 0.0
  init: str = "gaussian"

  def __post_init__(self):
    if self.width < 2 or self.depth < 1:
      raise ValueError(f"mlp.width / mlp.depth: expected width >= 2 and depth >= 1, got {self.width}, {self.depth}")
    if self.activation not in MLP_ACTIVATIONS:
      raise ValueError(f"mlp.activation: expected one of {', '.join(MLP_ACTIVATIONS)} (those with a mean-field "
                       f"prediction in spectral.free_probability), got {self.activation!r}")
    if self.init not in ("gaussian", "orthogonal"):
      raise ValueError(f"mlp.init: expected gaussian or orthogonal, got {self.init!r}")
    if not self.sigma_w > 0 or self.sigma_b < 0:
      raise ValueError(f"mlp.sigma_w / mlp.sigma_b: expected sigma_w > 0, sigma_b >= 0, got {self.sigma_w}, "
                       f"{self.sigma_b}")


class DeepMLP(nnx.Module):
  """``x (..., width) -> x^L (..., width)``."""

  def __init__(self, cfg: MLPConfig, *, rngs: nnx.Rngs):
    init = (normal_fan_in if cfg.init == "gaussian" else orthogonal_fan_in)(cfg.width, cfg.sigma_w)
    bias = lambda key, shape, dtype=jnp.float32: cfg.sigma_b * jax.random.normal(key, shape, dtype)
    self.layers = nnx.List([nnx.Linear(cfg.width, cfg.width, kernel_init=init, bias_init=bias, rngs=rngs)
                            for _ in range(cfg.depth)])
    self.activation = cfg.activation

  def __call__(self, x_BxD):
    for layer in self.layers:
      x_BxD = ACTIVATIONS[self.activation](layer(x_BxD))
    return x_BxD


def init_mlp_params(cfg: MLPConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, params) of a freshly initialised MLP; pure in ``key`` so ``jax.vmap`` makes ensembles."""
  return nnx.split(DeepMLP(cfg, rngs=nnx.Rngs(params=key)), nnx.Param)


def input_output_jacobian(graphdef, params, x_D: jax.Array) -> jax.Array:
  """``J = d x^L / d x^0`` at the input ``x_D`` (width x width), by forward-mode differentiation."""
  return jax.jacfwd(lambda x: nnx.merge(graphdef, params)(x))(x_D)
