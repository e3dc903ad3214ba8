"""The remainder after the structured part is removed (spectral/remainder.py)."""

import numpy as np
import pytest

from spectral import bbp, wigner
from spectral import remainder as rem
from spectral import structure as st


def _unstructured(result: st.StructureResult) -> st.StructureResult:
  """The same result with no components: the whole matrix treated as remainder."""
  a, b = result.shape
  return st.StructureResult(rank=0, singular_values=result.singular_values[:1], null_thresholds=result.null_thresholds[:1],
                            p_values=result.p_values[:1], u=np.zeros((a, 0)), v=np.zeros((b, 0)), s=np.zeros(0),
                            level=result.level, method=result.method, status="ok", shape=result.shape)


@pytest.mark.parametrize("law", ["gaussian", "t3"])
def test_noise_remainder_matches_its_null(law):
  rng = np.random.default_rng(0)
  w = (rng.standard_normal((96, 200)) if law == "gaussian" else rng.standard_t(3.0, (96, 200))).astype(np.float32)
  res = st.structure_rank(w, seed=0)
  out = rem.remainder_statistics(w, res, seed=1)
  assert res.rank == 0 and out.rank == 0
  assert out.ks_p_value > 0.05
  assert abs(out.spacing_ratio - wigner.GOE_MEAN_SPACING_RATIO) < 4 * out.spacing_ratio_se
  assert abs(out.spacing_ratio - out.spacing_ratio_null) < 4 * out.spacing_ratio_se
  assert out.ipr == pytest.approx(out.ipr_null, rel=0.3)  # heavy tails localise the top eigenvectors: so do flips
  if law == "gaussian":
    assert out.ipr == pytest.approx(out.ipr_porter_thomas, rel=0.3)
  else:
    assert out.ipr > 3 * out.ipr_porter_thomas
  assert out.n_above_null <= 1 and out.gap_ratio is None and not out.has_gap
  assert out.decay_exponent is None and "decay exponent" in out.status


def test_removing_planted_spikes_leaves_a_null_remainder_and_a_gap():
  shape = (80, 240)
  w = np.asarray(bbp.plant_spikes(3, shape, [8.0, 7.0, 6.0, 5.0])[0])
  res = st.structure_rank(w, seed=0, level=1e-3)  # an extra (noise) direction passes with probability ~level
  assert res.rank == 4
  kept = rem.remainder_statistics(w, res, seed=2)
  assert kept.ks_p_value > 0.05 and kept.has_gap and kept.gap_ratio > 2 and kept.n_above_null in (4, 5)
  ignored = rem.remainder_statistics(w, _unstructured(res), seed=2)  # spikes left in: their energy floods the flips
  assert ignored.ks_p_value <= 0.05 and ignored.ks > kept.ks


def test_power_law_continuum_has_no_gap_and_a_positive_decay_exponent():
  rng = np.random.default_rng(2)
  a, b, k, beta = 100, 300, 40, 0.8
  u = np.linalg.qr(rng.standard_normal((a, k)))[0]
  v = np.linalg.qr(rng.standard_normal((b, k)))[0]
  strengths = 6.0 * np.arange(1, k + 1) ** -beta
  w = (u * strengths) @ v.T + rng.standard_normal((a, b)) / np.sqrt(b)
  res = st.structure_rank(w.astype(np.float32), seed=0)
  out = rem.remainder_statistics(w, res, seed=3)
  assert res.rank >= 6 and out.n_above_null >= 6 and not out.has_gap  # spikes j <~ 13 are above BBP
  assert out.decay_exponent is not None and out.decay_exponent_se is not None
  assert 0.3 < out.decay_exponent < 1.2 and out.decay_exponent_se < 0.5 * out.decay_exponent


def test_remainder_bad_input():
  w = np.random.default_rng(3).standard_normal((20, 30)).astype(np.float32)
  res = st.structure_rank(w)
  with pytest.raises(ValueError, match="result"):
    rem.remainder_statistics(w.T, res)
  with pytest.raises(ValueError, match="draws"):
    rem.remainder_statistics(w, res, draws=2)
  with pytest.raises(ValueError, match="init"):
    rem.remainder_statistics(w, res, init=np.zeros((3, 3)))


def test_small_matrix_with_many_components_gets_no_decay_fit_and_no_warning():
  """In a 12 x 1000 matrix with 8 planted components the flipped remainder has only M - k = 4 non-zero singular
  values: neither the decay exponent (5 reference values needed) nor a spacing ratio (3 central levels) can be
  formed. The status says so, instead of dividing by the null's zeros (log(0) and 0/0 warnings and a NaN exponent)
  or raising from the spacing ratio."""
  import warnings

  w = np.asarray(bbp.plant_spikes(5, (12, 1000), [60.0, 50.0, 42.0, 35.0, 29.0, 24.0, 20.0, 17.0])[0])
  res = st.structure_rank(w, seed=0)
  assert res.rank == 8
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    out = rem.remainder_statistics(w, res, seed=1, draws=9)
  assert out.decay_exponent is None and "M - k = 4" in out.status
  assert np.isnan(out.spacing_ratio) and "spacing ratio" in out.status
  assert out.status.startswith("ok (") and out.rank == 8
