"""Jacobian and Hessian spectra tracked during training (models.tracking): stored values equal independent
recomputations, closed forms hold, resumption stays bit-identical, and tracking off changes nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from models.presets import tiny_config
from models import run_folder, tracking
from models.config import with_overrides
from models.data import make_task
from models.members import graphdef_of, init_params, member_key, members_of
from models.steps import loss_and_accuracy
from models.train import TrainingInterrupted, load_trained_params, train_run
from spectral import jacobian as jc

STEPS = 12
TRACKED = {"tracking.track_jacobian": True, "tracking.jacobian_probe_batch": 3, "tracking.track_hessian": True,
           "tracking.hessian_top_k": 2, "tracking.hessian_lanczos_steps": 8, "tracking.hessian_trace_matvecs": 6}


def _cfg(name, **overrides):
  base = {"model.num_layers": 2, "train.steps": STEPS, "train.snapshot_steps": [0, 5, STEPS],
          "train.checkpoint_every": 3, "train.log_every": 1, "data.noise_p": [0.0], "data.regime_names": ["s"]}
  return with_overrides(tiny_config(name), base | overrides)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
  return train_run(_cfg("tracked", **TRACKED), tmp_path_factory.mktemp("tracked"), progress=False)


def _member_model(cfg, params, i):
  return nnx.merge(graphdef_of(cfg), jax.tree_util.tree_map(lambda x: x[i], params))


def test_stored_jacobians_equal_a_recomputation_from_the_checkpoint(tracked):
  run = run_folder.load_run(tracked)
  step, cfg, params = load_trained_params(tracked, STEPS)
  assert sorted(run.jacobians) == [0, 5, STEPS]
  members = members_of(cfg)
  d, n_probe, seq = cfg.model.d_model, cfg.tracking.jacobian_probe_batch, cfg.data.seq_len
  stored = run.jacobians[STEPS]
  assert sorted(stored) == ["blocks.0", "blocks.1", "network"]
  assert all(v.shape == (len(members), n_probe, d) for v in stored.values())
  task = make_task(cfg.data)
  for m in members:
    model = _member_model(cfg, params, m.index)
    tokens = tracking.probe_batch(cfg, task, member_key(cfg, m.seed_index), m.noise_p, n_probe)[:, :-1]
    for p in range(n_probe):
      mask = nnx.make_causal_mask(tokens[p][None])
      blocks = [lambda x, b=b: b(x[None], mask)[0] for b in model.blocks]

      def network(x):
        for f in blocks:
          x = f(x)
        return x

      xs = [model.embed_tokens(tokens[p][None])[0]]  # x_0, then each block's output
      for f in blocks:
        xs.append(f(xs[-1]))
      # Block l at its own input x_l; the network at x_0 by one direct jacfwd (the tracker multiplies blocks).
      for name, f, x_in in [("network", network, xs[0]), *((f"blocks.{l}", f, xs[l]) for l, f in enumerate(blocks))]:
        want = np.asarray(jc.per_token_jacobian_singular_values(f, x_in, seq - 1))
        got = stored[name][m.index, p]
        # float32 throughout; the two paths round differently (jit + vmap vs eager; the network as a product of
        # block Jacobians vs one jacfwd), each a few ulps of the largest singular value per D-term sum.
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * want[0], err_msg=f"{name}, member {m.index}")
  assert np.all(np.diff(stored["network"], axis=-1) <= 0)
  # The probe batch is fixed: the same function of the member key at every snapshot, so the init-time block
  # spectra at step 0 differ from those at the last step only through the trained weights.
  assert not np.allclose(run.jacobians[0]["blocks.0"], stored["blocks.0"])


def test_hessian_rows_in_the_metrics_table(tracked):
  run = run_folder.load_run(tracked)
  names = {"hessian_top_1", "hessian_top_2", "hessian_trace", "hessian_trace_se"}
  rows = [r for r in run.metrics if r["metric"].startswith("hessian")]
  assert {r["metric"] for r in rows} == names
  assert sorted({r["step"] for r in rows}) == [0, 5, STEPS] and len(rows) == 3 * len(run.members) * 4
  for m in range(len(run.members)):
    top1, top2 = run.metric("hessian_top_1", m)[1], run.metric("hessian_top_2", m)[1]
    assert np.all(np.isfinite(top1)) and np.all(top1 >= top2) and np.all(run.metric("hessian_trace_se", m)[1] > 0)


@pytest.mark.slow  # minutes on 2 cores (retrains twice); run with -m slow
def test_resume_with_tracking_is_bit_identical(tmp_path, tracked):
  cfg = _cfg("tracked", **TRACKED)
  with pytest.raises(TrainingInterrupted):
    train_run(cfg, tmp_path, progress=False, stop_after=7)  # checkpoints at 3, 5 and 6; resumes from 6
  train_run(cfg, tmp_path, progress=False)
  a, b = run_folder.load_run(tracked), run_folder.load_run(tmp_path / cfg.name)
  assert b.info["resumed_from_step"] == 6
  assert (tracked / "metrics.csv").read_bytes() == (b.path / "metrics.csv").read_bytes()
  for field in ("spectra", "jacobians"):
    sa, sb = getattr(a, field), getattr(b, field)
    assert sorted(sa) == sorted(sb)
    for step in sa:
      assert sorted(sa[step]) == sorted(sb[step])
      for name in sa[step]:
        np.testing.assert_array_equal(sa[step][name], sb[step][name])


def test_tracking_off_leaves_the_run_folder_unchanged(tmp_path, tracked):
  """The untracked run writes no jacobians/ and no Hessian rows, and everything else equals the tracked run: tracking
  draws no randomness that training uses."""
  plain = train_run(_cfg("tracked"), tmp_path, progress=False)
  assert not (plain / "jacobians").exists()
  run = run_folder.load_run(plain)
  assert run.jacobians == {} and not any(r["metric"].startswith("hessian") for r in run.metrics)
  tracked_lines = [ln for ln in (tracked / "metrics.csv").read_text().splitlines() if ",hessian_" not in ln]
  assert (plain / "metrics.csv").read_text().splitlines() == tracked_lines
  other = run_folder.load_run(tracked)
  for step, spectra in run.spectra.items():
    for name, ev in spectra.items():
      np.testing.assert_array_equal(ev, other.spectra[step][name])


def test_linear_mlp_only_blocks_at_init_have_the_closed_form_jacobian():
  """mlp_only, no LayerNorm, linear activation: block l maps ``x -> x + (x W_in + b_in) W_out + b_out`` per token
  (Flax kernels are (in, out), row vectors), so ``J_l = (I + W_in W_out)^T`` whatever the input, and the network's
  ``J = (M_0 M_1)^T`` with ``M_l = I + W_in^l W_out^l``."""
  cfg = _cfg("linear", **{"model.block": "mlp_only", "model.norm": "none", "model.activation": "linear",
                          "model.mlp_ratio": 2, "tracking.track_jacobian": True, "tracking.jacobian_probe_batch": 2,
                          "tracking.jacobian_position": 3})
  key = member_key(cfg, 0)
  params = init_params(cfg, key)
  track = tracking.member_tracking(cfg, graphdef_of(cfg), make_task(cfg.data), None)
  out = jax.jit(track)(params, key, 0.0)["jacobian"]
  eye = np.eye(cfg.model.d_model)
  ms = [eye + np.asarray(b["mlp_in"]["kernel"][...], np.float64) @ np.asarray(b["mlp_out"]["kernel"][...], np.float64)
        for b in (params["blocks"][0], params["blocks"][1])]
  for name, m in (("blocks.0", ms[0]), ("blocks.1", ms[1]), ("network", ms[0] @ ms[1])):
    want = np.linalg.svd(m, compute_uv=False)
    for p in range(2):  # float32 Jacobian vs float64 closed form: |dJ| ~ a few eps32 * |W_in| |W_out| sqrt(D)
      np.testing.assert_allclose(out[name][p], want, rtol=0, atol=1e-5 * want[0], err_msg=name)


def test_hessian_top_eigenvalues_and_trace_match_the_dense_hessian():
  """A model small enough for ``jax.hessian`` (P = 201 parameters): Lanczos top eigenvalues against ``eigh`` and the
  Hutch++ trace within 4 of its standard errors."""
  cfg = with_overrides(tiny_config("dense"), {
      "model.d_model": 4, "model.num_heads": 1, "model.mlp_ratio": 1, "data.vocab_size": 5, "data.seq_len": 3,
      "data.batch_size": 4, "tracking.track_hessian": True, "tracking.hessian_top_k": 3,
      "tracking.hessian_lanczos_steps": 40, "tracking.hessian_trace_matvecs": 30})
  graphdef, task = graphdef_of(cfg), make_task(cfg.data)
  key = member_key(cfg, 0)
  params = init_params(cfg, key)
  loss_fn = lambda prm, tokens, weights: loss_and_accuracy(graphdef, prm, tokens, weights)[0]
  out = jax.jit(tracking.member_tracking(cfg, graphdef, task, loss_fn))(params, key, 0.5)
  tokens = tracking.probe_batch(cfg, task, key, 0.5, cfg.data.batch_size)
  flat, unravel = ravel_pytree(params)
  assert flat.size == 201
  dense = jax.jit(jax.hessian(lambda f: loss_fn(unravel(f), tokens, task.weights)))(flat)
  eigs = np.linalg.eigvalsh(np.asarray(dense, np.float64))[::-1]
  # P = 201. The top three eigenvalues (4.83, 3.94, 2.13, next 1.92) are separated enough that 40 steps with full
  # reorthogonalisation converge them to the float32 round-off of the products (measured: relative <= 1e-6, the same
  # at 20 and 60 steps); 1e-5 leaves that ~10x margin and would catch a wrong operator, batch or ordering.
  np.testing.assert_allclose(out["hessian_top"], eigs[:3], rtol=1e-5)
  assert abs(float(out["hessian_trace"]) - eigs.sum()) <= 4 * float(out["hessian_trace_se"])
