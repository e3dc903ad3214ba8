"""Semicircle law, spacing-ratio reference values and the IPR of delocalised vectors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from spectral import esd as esd_lib
from spectral import wigner


def test_semicircle_cdf_integrates_pdf_and_moments():
  for x in (-1.5, 0.0, 0.7, 1.99):
    val, _ = integrate.quad(wigner.semicircle_pdf, -2.0, x)
    assert wigner.semicircle_cdf(x) == pytest.approx(val, abs=1e-10)
  second, _ = integrate.quad(lambda x: x * x * wigner.semicircle_pdf(x, radius=3.0), -3, 3)
  assert second == pytest.approx(9.0 / 4.0)  # variance R^2 / 4
  with pytest.raises(ValueError, match="radius"):
    wigner.semicircle_pdf(0.0, radius=-1)


def test_goe_spectrum_follows_semicircle():
  n = 400
  ev = np.linalg.eigvalsh(np.asarray(wigner.goe(0, n), np.float64))
  f = wigner.semicircle_cdf(ev)
  ks = max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))
  assert ks < 5.0 / n  # rigid spectrum: KS ~ 1/N (docs/THEORY.md#tolerances)


def _check_ratio(ev, expected):
  mean, se = wigner.spacing_ratio(ev)
  k = len(ev) // 2 - 2
  assert float(se) == pytest.approx(0.25 / np.sqrt(k), rel=0.35)
  assert abs(float(mean) - expected) < 4 * float(se)
  return float(mean)


def test_spacing_ratio_goe_gue_poisson():
  n = 500
  goe_ev = np.linalg.eigvalsh(np.asarray(wigner.goe(1, n), np.float64))
  r_goe = _check_ratio(goe_ev, wigner.GOE_MEAN_SPACING_RATIO)
  rng = np.random.default_rng(2)
  a = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
  r_gue = _check_ratio(np.linalg.eigvalsh((a + a.conj().T) / 2), wigner.GUE_MEAN_SPACING_RATIO)
  r_poi = _check_ratio(np.sort(rng.uniform(size=n)), wigner.POISSON_MEAN_SPACING_RATIO)
  assert r_poi < r_goe < r_gue
  assert wigner.POISSON_MEAN_SPACING_RATIO == pytest.approx(0.3863, abs=1e-4)


def test_wishart_bulk_has_goe_spacing_and_batching():
  rng = np.random.default_rng(3)
  ws = rng.normal(size=(2, 300, 600))
  ev = np.stack([esd_lib.esd_reference(w) for w in ws])
  mean, se = jax.jit(wigner.spacing_ratio)(ev)
  assert mean.shape == (2,)
  assert np.all(np.abs(np.asarray(mean) - wigner.GOE_MEAN_SPACING_RATIO) < 4 * np.asarray(se))


def test_spacing_ratio_on_the_host_matches_the_device_and_keeps_float64():
  rng = np.random.default_rng(5)
  ev = np.sort(rng.normal(size=(4, 7, 40)) ** 2, axis=-1)
  ev[1, 2, 15:25] = 1.0  # a degenerate run: NaN ratios, ignored
  ev[2, 3, :] = 1.0  # every central ratio NaN: the mean is NaN, with no warning
  host = wigner.spacing_ratio(ev, xp=np)
  device = wigner.spacing_ratio(ev)
  assert host[0].dtype == np.float64 and host[0].shape == (4, 7)
  for h, d in zip(host, device):
    np.testing.assert_allclose(h, np.asarray(d), rtol=1e-5, equal_nan=True)
  assert np.isnan(host[0][2, 3]) and np.isfinite(host[0][1, 2])
  np.testing.assert_array_equal(np.isnan(wigner.spacing_ratios(ev, xp=np)), np.isnan(wigner.spacing_ratios(ev)))
  with pytest.raises(ValueError, match="eigenvalues"):
    wigner.spacing_ratio(ev[..., :4], xp=np)


def test_ipr_delocalised_and_localised():
  n = 300
  _, vecs = np.linalg.eigh(np.asarray(wigner.goe(4, n), np.float64))
  ipr = np.asarray(wigner.inverse_participation_ratio(vecs))
  # Mean of n IPRs; each has sd ~ sqrt(96/n^3) around 3/(n+2) for Porter-Thomas, so the mean is tight.
  assert np.mean(ipr) == pytest.approx(wigner.delocalised_ipr(n), rel=0.05)
  e = np.zeros(n)
  e[:4] = 1.0
  assert float(wigner.inverse_participation_ratio(jnp.asarray(e))) == pytest.approx(0.25)
