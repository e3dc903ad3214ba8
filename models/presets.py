"""Named run configurations: the flagship "noise versus structure" run and its seconds-long tiny version.

``default_config()`` is what ``python -m lab main`` trains (``RunConfig()``: 3 regimes x 3 seeds, 600 steps);
``tiny_config(name)`` shrinks every size (``TINY_OVERRIDES``) so the whole pipeline runs in seconds, for
``python -m lab main --tiny``, the quick theory checks and the tests. Both live in ``models`` so every part of the
lab (checks, figures, the command line) can name them without importing the command layer.
"""

from __future__ import annotations

from models.config import RunConfig, with_overrides

TINY_OVERRIDES = {"model.d_model": 16, "model.num_heads": 2, "model.num_layers": 1, "data.seq_len": 8,
                  "data.vocab_size": 16, "data.batch_size": 8, "train.steps": 20, "train.members_per_regime": 2,
                  "train.snapshot_steps": [0, 5, 20], "train.eval_batches": 1}


def default_config() -> RunConfig:
  """The main job's configuration."""
  return RunConfig()


def tiny_config(name: str = "tiny") -> RunConfig:
  """The main job shrunk to seconds (``TINY_OVERRIDES``), as run folder ``name``."""
  return with_overrides(RunConfig(name=name), TINY_OVERRIDES)
