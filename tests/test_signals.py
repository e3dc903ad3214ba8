"""models.signals: each summary measured on a planted case with a known answer, and written by training."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from models import signals as sg
from models.config import RunConfig, with_overrides
from models.run_folder import load_run
from models.train import train_run


def test_fourier_power_finds_the_planted_mode():
  n, d = 23, 8
  modes = jnp.asarray(sg.fourier_modes(n), jnp.float32)
  rng = np.random.default_rng(0)
  planted = sg.fourier_modes(n)[5] @ rng.standard_normal((2, d))  # only mode 5
  power = np.asarray(sg.fourier_power(jnp.asarray(planted, jnp.float32), modes))
  assert power.shape == (n // 2 + 1,)
  assert power[5] > 0.999 and abs(power.sum() - 1.0) < 1e-4
  noise = np.asarray(sg.fourier_power(jnp.asarray(rng.standard_normal((n, 64)), jnp.float32), modes))
  assert abs(noise.sum() - 1.0) < 1e-4 and noise.max() < 0.2  # spread: 2/23 per mode on average


def test_trap_ratio_is_one_for_iid_and_large_for_a_big_entry():
  rng = np.random.default_rng(1)
  w = rng.standard_normal((64, 256)).astype(np.float32)
  key = jax.random.PRNGKey(0)
  iid = np.asarray(sg.trap_ratios(jnp.asarray(w), key))
  assert 0.85 < iid[0] < 1.15  # the MP edge, up to Tracy-Widom fluctuations at M = 64
  w[3, 7] = 60.0  # one entry of 60 sigma: lambda ~ 60^2 / 256 = 14 in units of sigma^2, far above (1 + 1/2)^2
  trapped = np.asarray(sg.trap_ratios(jnp.asarray(w), key))
  assert trapped[0] > 4.0 and trapped[1] < 1.3


def test_trap_ratios_wait_for_after_without_changing_a_bit():
  """``wait_for`` orders the eigh kernel after another array (``spectral.esd.after``, whose compiled ordering is
  tested in tests/test_esd.py: two batched LAPACK eigh kernels in flight deadlocked XLA's 2-thread CPU pool) and
  leaves every value as it was."""
  w = jnp.asarray(np.random.default_rng(2).standard_normal((32, 64)), jnp.float32)
  key = jax.random.PRNGKey(3)
  chained = jax.jit(lambda w, key, prev: sg.trap_ratios(w, key, wait_for=prev))
  np.testing.assert_array_equal(np.asarray(chained(w, key, jnp.ones(4))), np.asarray(jax.jit(sg.trap_ratios)(w, key)))


def test_class_ratio_planted_clusters():
  rng = np.random.default_rng(2)
  labels = np.repeat(np.arange(4), 50)
  centres = 3.0 * rng.standard_normal((4, 16))
  h = centres[labels] + rng.standard_normal((200, 16))
  ratio = float(sg.class_ratio(jnp.asarray(h, jnp.float32), jnp.asarray(labels), 6))
  expected = np.sum(50 * np.sum((centres - centres.mean(0)) ** 2, axis=1)) / (200 * 16)
  assert abs(ratio / expected - 1.0) < 0.15
  shuffled = float(sg.class_ratio(jnp.asarray(h, jnp.float32), jnp.asarray(rng.permutation(labels)), 6))
  assert shuffled < 0.1


@pytest.mark.slow
def test_training_writes_signals(tmp_path):
  over = {"data.kind": "modular", "data.modulus": 7, "data.vocab_size": 9, "data.seq_len": 4, "data.batch_size": 8,
          "data.train_fraction": 0.5, "data.noise_p": [0.0], "data.regime_names": ["g"], "model.d_model": 16,
          "model.num_heads": 2, "model.num_layers": 1, "train.steps": 6, "train.snapshot_steps": [0, 2, 4, 6],
          "train.members_per_regime": 2, "train.eval_batches": 1, "tracking.track_signals": True,
          "tracking.signals_sketch_dim": 16, "tracking.signals_weights_every": 2}
  run = load_run(train_run(with_overrides(RunConfig(name="sig"), over), tmp_path, progress=False))
  assert sorted(run.signals) == [0, 2, 4, 6]
  s0, s2 = run.signals[0], run.signals[2]
  assert s0["sketch"].shape == (2, 16) and s0["fourier_embed"].shape == (2, 4)
  assert "dw_embed" in s0 and "dw_embed" not in s2 and "dw_embed" in run.signals[4]
  np.testing.assert_allclose(s0["dw_embed"], 0.0)  # step 0: no update yet
  assert np.all(np.isfinite(run.signals[6]["class_ratio"]))
  assert not np.allclose(run.signals[6]["sketch"], s0["sketch"])
  traps = [k for k in s0 if k.startswith("trap_")]
  assert traps and all(s0[k].shape == (2, sg.TRAP_TOP) for k in traps)
