"""The activation functions of the lab's networks, by name: the one list that configs validate against and models
apply (``models.transformer``'s MLP blocks, ``models.mlp``'s deep MLP)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

ACTIVATIONS = {"gelu": jax.nn.gelu, "relu": jax.nn.relu, "tanh": jnp.tanh, "linear": lambda x: x}
"""name -> elementwise function of a JAX array."""
