"""The optimiser and its learning-rate schedule, rebuilt per member from traced hyper-parameters.

Hyper-parameters are per-member arrays fed to one compiled step: the optax transformation is rebuilt inside the
traced step from the member's learning rate and weight decay (its state's structure does not depend on their
values), so K members with K learning rates share one program.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from models.config import RunConfig, TrainConfig

__all__ = ["learning_rate_schedule", "make_optimizer"]


def learning_rate_schedule(tc: TrainConfig, learning_rate):
  """The learning rate at optimiser count ``c``: ``lr * warmup(c) * cosine(c)``, or the constant ``lr`` itself.

  Warm-up is linear, ``min(1, (c + 1) / warmup_steps)``; cosine decays to 0 at ``steps``, starting after the warm-up
  for ``warmup_cosine`` and at 0 for ``cosine``.
  """
  if tc.schedule == "constant" and tc.warmup_steps == 0:
    return learning_rate

  def schedule(count):
    c = jnp.asarray(count, jnp.float32)
    factor = jnp.minimum(1.0, (c + 1.0) / tc.warmup_steps) if tc.warmup_steps else jnp.float32(1.0)
    if tc.schedule != "constant":
      start = tc.warmup_steps if tc.schedule == "warmup_cosine" else 0
      frac = jnp.clip((c - start) / max(tc.steps - start, 1), 0.0, 1.0)
      factor = factor * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    return learning_rate * factor

  return schedule


def make_optimizer(cfg: RunConfig, learning_rate=None, weight_decay=None) -> optax.GradientTransformation:
  """AdamW, or SGD with momentum and decoupled weight decay, after optional global-norm clipping.

  ``learning_rate`` and ``weight_decay`` default to the run-wide values and may be traced per-member scalars.
  """
  tc = cfg.train
  lr = tc.learning_rate if learning_rate is None else learning_rate
  wd = tc.weight_decay if weight_decay is None else weight_decay
  schedule = learning_rate_schedule(tc, lr)
  parts = [optax.clip_by_global_norm(tc.grad_clip)] if tc.grad_clip > 0 else []
  if tc.optimizer == "adamw":
    parts.append(optax.adamw(schedule, weight_decay=wd))
  else:
    parts += [optax.trace(decay=tc.momentum), optax.add_decayed_weights(wd), optax.scale_by_learning_rate(schedule)]
  return parts[0] if len(parts) == 1 else optax.chain(*parts)
