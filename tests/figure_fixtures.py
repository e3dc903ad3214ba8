"""Synthetic ``Verdict`` JSONs for the check-based figures (tiny, deterministic; numpy only).

They carry exactly the series names each figure module lists in ``SERIES`` (the names its check writes;
``test_figures.test_check_figures_read_what_their_checks_write`` holds them to the real checks), so a figure test
does not depend on a check's runtime. ``write_verdicts(dir)`` writes ``<dir>/<CHECK>.json`` (``models.check_result``) for every
check-based figure.
"""

import json

import numpy as np

from models.check_result import result_file
from spectral import bbp


def _verdict(check, series, measured=None, predicted=None, details=None):
  return dict(check=check, prediction="synthetic", source="test fixture", tolerance="none", status="PASS",
              measured=measured or {"x": 1}, predicted=predicted or {"x": 1}, details=details or [], run="",
              series=series)


def tw_verdict(seed=0, n=300):
  rng = np.random.default_rng(seed)
  t = rng.gumbel(-1.6, 1.0, n)  # roughly TW1-shaped: only the drawing is tested
  return _verdict("tw_fluctuations", dict(scaled_lmax=t.tolist()), measured=dict(ks_distance=0.05),
                  predicted=dict(ks_distance="<= 0.09"), details=[dict(shape=[80, 40], seeds=n, beta=1)])


def bbp_verdict(seed=0, q=0.5):
  rng = np.random.default_rng(seed)
  theta = np.array([0.3, 0.6, 1.2, 1.5, 2.0, 3.0])
  s1 = bbp.bbp_top_singular_value(theta, q) + rng.normal(0, 0.02, theta.size)
  ou, ov = bbp.bbp_overlaps(theta, q)
  grid = np.linspace(0.5, 1.5, 6)
  curve = np.linspace(0.05, 3.0, 40)
  tu, tv = bbp.bbp_overlaps(curve, q)
  return _verdict("bbp", dict(theta=theta.tolist(), s1_mean=s1.tolist(), s1_sd=[0.03] * theta.size,
                              overlap_u_mean=(ou + 0.01).tolist(), overlap_v_mean=(ov + 0.01).tolist(),
                              curve_theta=grid.tolist(), curve_detection_rate=[0, 0, 0.1, 0.6, 1, 1],
                              theory_theta=curve.tolist(), theory_s1=bbp.bbp_top_singular_value(curve, q).tolist(),
                              theory_overlap_u=tu.tolist(), theory_overlap_v=tv.tolist()),
                  measured=dict(theta_50_detection=1.1), details=[dict(theta=0.3), dict(q=q, q_pred=q)])


def jacobian_verdict(seed=0, n=48, depths=(1, 2, 4)):
  rng = np.random.default_rng(seed)
  gauss, orth = [], []
  for depth in depths:
    j, o = np.eye(n), np.eye(n)
    for _ in range(depth):
      j = rng.normal(0, 1 / np.sqrt(n), (n, n)) @ j
      o = np.linalg.qr(rng.normal(size=(n, n)))[0] @ o
    gauss.append((np.linalg.svd(j, compute_uv=False) ** 2).tolist())
    orth.append((np.linalg.svd(o, compute_uv=False) ** 2).tolist())
  # The names theory_checks.jacobian_spectra writes: one series per depth; orthogonal deviation in details.
  series = dict(depths=list(depths))
  for depth, g in zip(depths, gauss):
    series[f"linear_sq_sv_depth_{depth}"] = g
    series[f"tanh_sq_sv_depth_{depth}"] = (np.asarray(g) ** 0.5).tolist()
  details = [dict(part="orthogonal_isometry", depth=d, measured=float(np.max(np.abs(np.sqrt(o) - 1))))
             for d, o in zip(depths, orth)]
  return _verdict("jacobian_spectra", series, details=details)


def hessian_verdict(seed=0, classes=3):
  rng = np.random.default_rng(seed)
  dense = np.concatenate([[10.5, 9.8, 8.9], rng.normal(0.0, 0.01, 60)])
  ritz = np.concatenate([[10.5, 9.8, 8.9], rng.uniform(0, 0.03, 5)])
  return _verdict("hessian_outliers", dict(ritz_values=ritz.tolist(), dense_eigenvalues=np.sort(dense)[::-1].tolist()),
                  measured=dict(outliers=classes), predicted=dict(outliers=f"{classes - 1} or {classes}"))


def learning_bbp_verdict(seed=0, seeds=5):
  rng = np.random.default_rng(seed)
  theta = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
  grid = np.linspace(0.05, 3.2, 50)
  by_seed = np.clip(np.maximum(1 - theta[:, None] ** -2.0, 0.15) + rng.normal(0, 0.05, (theta.size, seeds)), 0, 1)
  ranks = [1, 2, 3]
  counts = lambda: [[k] * seeds for k in ranks]
  return _verdict("learning_bbp", dict(
      theta=theta.tolist(), overlap_mean=by_seed.mean(1).tolist(), overlap_min=by_seed.min(1).tolist(),
      overlap_max=by_seed.max(1).tolist(), overlap_by_seed=by_seed.tolist(), theory_theta=grid.tolist(),
      theory_overlap=np.where(grid > 1, 1 - grid ** -2.0, 0).tolist(), theta_c=1.0, theta_half_predicted=2**0.5,
      theta_half_measured=1.5, theta_half_se=0.1, plugin_overlap_mean=by_seed.mean(1).tolist(), chance_overlap=0.13,
      map_learned_mean=[0, 0, 1, 2, 2], ranks=ranks, rank_judged=[True, True, False], theta_rank=6.0,
      rank_map_learned_by_seed=counts(), rank_embed_learned_by_seed=counts(), rank_unembed_learned_by_seed=counts(),
      rank_mlp_in_learned_by_seed=counts(), rank_mlp_out_learned_by_seed=counts()),
      measured=dict(transition_status="PASS", rank_status="PASS"))


def trained_jacobians_verdict(seed=0):
  rng = np.random.default_rng(seed)
  regimes, steps = ["noise", "meso", "structured", "text"], [0, 30, 100, 300]
  ks = [[0.05 + r * t / 3000 + rng.uniform(0, 0.01) for t in steps] for r in range(4)]
  edge = [[1.0 + r * t / 1000 for t in steps] for r in range(4)]
  return _verdict("trained_jacobians", dict(
      regime=regimes, steps=steps, ks_mean=ks, ks_se=[[0.01] * 4] * 4, edge_ratio_mean=edge,
      edge_ratio_se=[[0.02] * 4] * 4, spike_overlap=[0.1, 0.3, 0.6, 0.5], spike_overlap_chance=[0.1, 0.12, 0.2, 0.3]),
      measured=dict(rejected_at_init=0))


def noise_structure_verdict():
  regimes = ["p=1", "p=0.5", "p=0", "text_noise", "natural_pydoc"]
  series = dict(regime=regimes, p=[1.0, 0.5, 0.0, 1.0, 0.0], natural=[False, False, False, False, True],
                text=[False, False, False, True, True], entropy_norm=[1.0, 0.71, 0.0, 1.0, 0.24],
                total_dc_mean=[9.0, 1.0, 0.0, 9.0, 4.0], total_positional_mean=[6.0, 4.0, 2.0, 6.0, 2.0],
                total_token_mean=[1.0, 0.5, 0.0, 19.0, 3.0], total_other_mean=[95.0, 118.0, 122.0, 75.0, 126.0],
                total_learned_mean=[96.0, 118.5, 122.0, 94.0, 129.0], total_learned_se=[2.0, 1.5, 1.0, 1.0, 3.0],
                total_excess_mean=[0.0, 22.0, 26.0, 0.0, 36.0], total_excess_se=[0.0, 3.0, 4.0, 0.0, 5.0],
                dynamics_steps=[30, 100, 300],
                dynamics_learned_mean=[123.0, 125.0, 119.0], dynamics_learned_se=[0.3, 1.5, 2.1],
                dynamics_excess_mean=[29.0, 31.0, 22.0], dynamics_excess_se=[6.0, 1.5, 6.0])
  return _verdict("noise_structure", series, measured=dict(meso_spike_rises_then_falls=True))


def _early_warning_aligned(rng, signals):
  off = np.arange(-600.0, 300.0, 50.0)
  aligned = {}
  for n in signals:
    pos = 1.0 + 2.0 / (1.0 + np.exp(-(off + 200.0) / 80.0))
    steps = np.arange(0.0, 1500.0, 50.0)
    ctrl = 1.0 + 0.1 * rng.standard_normal(steps.size)
    aligned[n] = dict(offset=off.tolist(), pos_median=pos.tolist(), pos_q25=(pos - 0.3).tolist(),
                      pos_q75=(pos + 0.3).tolist(), ctrl_steps=steps.tolist(), ctrl_median=ctrl.tolist(),
                      ctrl_q25=(ctrl - 0.2).tolist(), ctrl_q75=(ctrl + 0.2).tolist(), threshold=1.6,
                      alarm_offsets=[-350.0, -300.0, -250.0], t50_median=900.0)
  return aligned


def early_warning_verdict(seed=0, signals=("update_gap", "class_ratio"), tasks=()):
  """Synthetic aligned trajectories: grokking runs rise before offset 0, controls stay flat; ``tasks``: names of
  second tasks with the same two-signal panels (series ``tasks``)."""
  rng = np.random.default_rng(seed)
  series = dict(signals=list(signals), aligned=_early_warning_aligned(rng, signals), fpr=0.05, table="...")
  if tasks:
    series["tasks"] = {t: dict(title=f"composition in {t}", signals=list(signals), fpr=0.05, table="...",
                               aligned=_early_warning_aligned(rng, signals)) for t in tasks}
  return _verdict("early_warning", series)


VERDICTS = dict(tw_fluctuations=tw_verdict, bbp=bbp_verdict, jacobian_spectra=jacobian_verdict,
                hessian_outliers=hessian_verdict, learning_bbp=learning_bbp_verdict,
                trained_jacobians=trained_jacobians_verdict, noise_structure=noise_structure_verdict,
                early_warning=early_warning_verdict)


def write_verdicts(checks_dir) -> dict:
  out = {}
  for name, make in VERDICTS.items():
    path = result_file(checks_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    v = make()
    path.write_text(json.dumps(v))
    out[name] = v
  return out
