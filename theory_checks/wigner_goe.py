"""Check 4: Wigner semicircle and GOE level statistics, and the level statistics of trained weight matrices' bulks.

Predictions (docs/THEORY.md#wigner_goe):
(a) GOE ``H = (A + A^T) / sqrt(2N)``: the ESD tends to the semicircle ``sqrt(4 - x^2) / (2 pi)`` on [-2, 2] (Wigner
    1958). Eigenvalues are rigid (Erdos, Yau & Yin 2012: ``|l_i - gamma_i| <~ N^(-2/3) min(i, N + 1 - i)^(-1/3)`` up to
    log factors), so the KS distance to the semicircle shrinks like 1/N (up to logs).
(b) Mean spacing ratio of the central half of a GOE spectrum: 0.5307 (Atas, Bogomolny, Giraud & Roux 2013, PRL
    110:084101, Table I); Poisson 2 ln 2 - 1 = 0.3863.
(c) Eigenvalues of ``W^T W`` for iid ``W`` have GOE-type local statistics, so the bulk spacing ratio of a trained
    weight matrix stays at its random (initialisation) value unless training made the bulk non-random.

Measurement: (a, b) ``seeds`` GOE matrices of size N and 4N drawn and diagonalised in one vmapped JAX computation per
size; (c) the step-0 and final spectra of the main job's run folder (``lab``), ratios of the central half.

Tolerances:
(a) finite-size scaling, not a hand-set bound: with eigenvalues pooled over seeds, ``KS(4N) / KS(N)`` must be at most
    1/2 = 4^(-1/2). Rigidity predicts about 1/4; even iid samples from the right law would give 1/2; a wrong law gives
    a KS distance that stops shrinking (ratio -> 1). This separates right from wrong without fixing a constant.
(b) ``|mean r - 0.5307| <= 4 SE + 0.001`` (SE across seeds; 0.001 covers the finite-N drift of the central-half
    mean, below 1e-3 at N >= 100, and the 4-digit rounding of the reference value).
(c) per matrix, the mean ratio of its central half; the trained-minus-init difference of the means over matrices must
    be within 4 SE (paired over matrices and members), and the init value itself within 4 SE + 0.03 of 0.5307 (the
    0.03 is the small-M deviation of the central-half mean at M = 16; the paired comparison is the real test).
``radius`` and ``r_pred`` replace the predictions (the deliberately wrong predictions of the tests).
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from spectral import wigner
from theory_checks import common
from theory_checks.verdict import FAIL, INCONCLUSIVE, PASS, Verdict

NAME = "wigner_goe"


def sizes(quick: bool) -> dict:
  return dict(n=100, seeds=16) if quick else dict(n=1000, seeds=64)


@functools.partial(jax.jit, static_argnames=("n", "seeds"))
def goe_spectra(key, n: int, seeds: int):
  """(seeds, n) ascending GOE spectra, one vmapped computation."""
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(seeds))
  return jax.vmap(lambda k: jnp.linalg.eigvalsh(wigner.goe(k, n)))(keys)


def _ks_semicircle(ev, radius):
  return common.ks_statistic(np.ravel(ev), lambda x: wigner.semicircle_cdf(x, radius))


def trained_bulk(run) -> dict:
  """Mean central-half spacing ratio per (matrix, member) at step 0 and at the last snapshot of a run folder."""
  last = max(run.spectra)
  init, final = [], []
  for name in sorted(run.spectra[last]):
    ev0, ev1 = run.spectra[0][name], run.spectra[last][name]
    for i in range(ev1.shape[0]):
      init.append(float(np.nanmean(np.asarray(wigner.spacing_ratios(ev0[i])))))
      final.append(float(np.nanmean(np.asarray(wigner.spacing_ratios(ev1[i])))))
  return dict(step=last, init=np.asarray(init), final=np.asarray(final))


def check(n: int = 100, seeds: int = 16, seed: int = 0, *, run=None, radius: float = 2.0,
          r_pred: float = wigner.GOE_MEAN_SPACING_RATIO) -> Verdict:
  key = jax.random.PRNGKey(seed)
  ev_n = np.asarray(goe_spectra(jax.random.fold_in(key, 0), n, seeds), np.float64)
  ev_4n = np.asarray(goe_spectra(jax.random.fold_in(key, 1), 4 * n, seeds), np.float64)
  ks_n, ks_4n = _ks_semicircle(ev_n, radius), _ks_semicircle(ev_4n, radius)
  semicircle_ok = ks_4n / ks_n <= 0.5
  r_seeds = np.nanmean(np.asarray(wigner.spacing_ratios(ev_4n)), axis=-1)
  r_mean, r_se = common.mean_se(r_seeds)
  ratio_ok = abs(r_mean - r_pred) <= 4 * r_se + 0.001
  rng = np.random.default_rng(seed)
  poisson = np.sort(rng.uniform(size=(seeds, 4 * n)), axis=-1)
  r_poisson = float(np.nanmean(np.asarray(wigner.spacing_ratios(poisson))))
  measured = dict(ks_n=ks_n, ks_4n=ks_4n, ks_ratio=ks_4n / ks_n, goe_spacing_ratio=r_mean, goe_spacing_ratio_se=r_se,
                  poisson_control_spacing_ratio=r_poisson)
  predicted = dict(ks_ratio="<= 0.5 (rigidity: ~0.25; wrong law: ~1)", goe_spacing_ratio=r_pred,
                   poisson_control_spacing_ratio=wigner.POISSON_MEAN_SPACING_RATIO)
  details = [dict(part="semicircle", n=n, seeds=seeds, ok=bool(semicircle_ok)),
             dict(part="goe_spacing_ratio", n=4 * n, ok=bool(ratio_ok))]
  series = dict(goe_ev_sample=ev_4n[0], spacing_ratios_goe=np.asarray(wigner.spacing_ratios(ev_4n[0])),
                spacing_ratios_poisson=np.asarray(wigner.spacing_ratios(poisson[0])))
  ok = semicircle_ok and ratio_ok
  status_trained = None
  if run is not None:
    tb = trained_bulk(run)
    diff = tb["final"] - tb["init"]
    d_mean, d_se = common.mean_se(diff)
    i_mean, i_se = common.mean_se(tb["init"])
    f_mean, _ = common.mean_se(tb["final"])
    trained_ok = abs(d_mean) <= 4 * d_se and abs(i_mean - r_pred) <= 4 * i_se + 0.03
    status_trained = bool(trained_ok)
    measured.update(trained_bulk_ratio=f_mean, init_bulk_ratio=i_mean, trained_minus_init=d_mean,
                    trained_minus_init_se=d_se)
    predicted.update(trained_bulk_ratio=f"= init value (GOE-type {r_pred})", trained_minus_init="0 within 4 SE")
    details.append(dict(part="trained_bulk", run=str(run.path), step=tb["step"], matrices=int(diff.size),
                        ok=status_trained))
    series.update(trained_bulk_ratio=tb["final"], init_bulk_ratio=tb["init"])
    ok = ok and trained_ok
  return Verdict(
      check=NAME,
      prediction="GOE ESD -> semicircle on [-2, 2] (KS ~ 1/N by rigidity); GOE central-half spacing ratio 0.5307; "
      "trained weight matrices keep the spacing ratio of their random initialisation",
      source="Wigner 1958; Erdos-Yau-Yin 2012 rigidity; Atas et al. 2013 PRL 110:084101 Table I; "
      "docs/THEORY.md#wigner_goe",
      tolerance="pooled KS(4N)/KS(N) <= 1/2; |r - 0.5307| <= 4 SE + 0.001; trained - init within 4 SE (paired), "
      "init within 4 SE + 0.03 of 0.5307 (small-M drift)",
      status=PASS if ok else FAIL,
      measured=measured, predicted=predicted, details=details, run=str(run.path) if run is not None else "",
      series=series)


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  from models.run_folder import load_run
  from models.train import train_run
  from theory_checks.mp_at_init import run_config
  run_dir = train_run(run_config(quick), runs_dir, progress=False)
  return check(seed=seed, run=load_run(run_dir), **sizes(quick))


del INCONCLUSIVE
