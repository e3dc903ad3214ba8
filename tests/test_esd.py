"""ESD normalisation and the Marchenko-Pastur law against float64 references."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from spectral import esd as esd_lib
from spectral import marchenko_pastur as mp


@pytest.mark.parametrize("shape", [(30, 70), (70, 30), (40, 40)])
def test_reference_esd_matches_numpy_gram_convention(shape):
  w = np.random.default_rng(1).normal(size=shape)
  n = max(shape)
  gram = w.T @ w if shape[0] > shape[1] else w @ w.T
  expected = np.linalg.eigvalsh(gram / n)
  np.testing.assert_allclose(esd_lib.esd_reference(w), expected, rtol=1e-12, atol=1e-12)
  # Singular values of W / sqrt(N) are the square roots.
  s = np.linalg.svd(w / np.sqrt(n), compute_uv=False)
  np.testing.assert_allclose(np.sort(s**2), esd_lib.esd_reference(w), rtol=1e-10, atol=1e-12)


def test_accelerated_esd_bounded_against_float64_reference_and_batched():
  rng = np.random.default_rng(2)
  ws = rng.normal(size=(3, 64, 160)).astype(np.float32)
  got = np.asarray(esd_lib.esd(ws))
  assert got.shape == (3, 64)
  for i in range(3):
    ref = esd_lib.esd_reference(ws[i])
    # float32 Gram + eigvalsh: relative error ~ 1e-6 of the spectral norm.
    assert np.max(np.abs(got[i] - ref)) < 1e-5 * ref.max()


def test_bf16_is_upcast():
  w = jnp.asarray(np.random.default_rng(3).normal(size=(16, 32)), dtype=jnp.bfloat16)
  got = esd_lib.esd(w)
  assert got.dtype == jnp.float32
  ref = esd_lib.esd_reference(np.asarray(w.astype(jnp.float32)))
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones(5), "rank 1"),
        (np.ones((2, 3, 4)), "rank 3"),
        (np.ones((1, 8)), "both dimensions"),
        (np.zeros((0, 8)), "both dimensions"),
        (np.zeros((4, 8)), "all zeros"),
        (np.ones((4, 8), dtype=np.int32), "floating"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or Inf"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or Inf"),
    ],
)
def test_bad_matrices_get_named_errors(bad, match):
  with pytest.raises(ValueError, match=match):
    esd_lib.esd_reference(bad)


@pytest.mark.parametrize("q", [0.1, 0.5, 1.0])
def test_mp_density_integrates_to_one_with_stated_moments(q):
  sigma2 = 1.7
  lo, hi = mp.mp_edges(q, sigma2)
  pdf = lambda t: mp.mp_pdf(t, q, sigma2)
  mass = integrate.quad(pdf, lo, hi, limit=200)[0]
  m1 = integrate.quad(lambda t: t * pdf(t), lo, hi, limit=200)[0]
  m2 = integrate.quad(lambda t: t * t * pdf(t), lo, hi, limit=200)[0]
  np.testing.assert_allclose([mass, m1, m2], [1.0, sigma2, sigma2**2 * (1 + q)], rtol=1e-6)


@pytest.mark.parametrize("q", [0.1, 0.3, 1.0])
def test_mp_cdf_matches_quadrature_and_quantile_inverts_it(q):
  lo, hi = mp.mp_edges(q, 0.8)
  xs = np.linspace(lo, hi, 9)
  exact = [integrate.quad(lambda t: mp.mp_pdf(t, q, 0.8), lo, x, limit=400)[0] for x in xs]
  np.testing.assert_allclose(mp.mp_cdf(xs, q, 0.8), exact, atol=1e-7)
  ps = np.array([0.01, 0.25, 0.5, 0.9, 0.999])
  np.testing.assert_allclose(mp.mp_cdf(mp.mp_quantile(ps, q, 0.8), q, 0.8), ps, atol=1e-12)


def test_robust_sigma2_recovers_variance_with_planted_spikes():
  rng = np.random.default_rng(4)
  m, n, sigma = 1000, 4000, 1.3
  w = sigma * rng.normal(size=(m, n))
  u = np.linalg.qr(rng.normal(size=(m, 5)))[0]
  v = np.linalg.qr(rng.normal(size=(n, 5)))[0]
  w += (u * (sigma * np.sqrt(n) * np.array([3.0, 4.0, 5.0, 6.0, 8.0]))) @ v.T
  ev = esd_lib.esd_reference(w)
  fit = mp.fit_mp_sigma2(ev, m / n)
  assert abs(fit / sigma**2 - 1) < 0.01
  # The mean (trace) estimator is biased upward by the spikes: the median estimator must beat it.
  assert abs(ev.mean() / sigma**2 - 1) > abs(fit / sigma**2 - 1)


def test_pure_noise_ks_distance_within_rigidity_bound():
  rng = np.random.default_rng(5)
  m, n = 400, 1000
  ev = esd_lib.esd_reference(rng.normal(size=(m, n)))
  ks = mp.mp_ks_distance(ev, m / n, 1.0)
  assert ks * m < 6.0
  # A wrong variance is far away: the distance can fail.
  assert mp.mp_ks_distance(ev, m / n, 1.3) * m > 20


def test_snapshot_spectra_run_their_eigenvalue_kernels_one_after_another(monkeypatch):
  """``models.steps.spectra_of`` dispatches one matrix's ESD program only once every earlier one has finished, so no
  two batched LAPACK eigh kernels are in flight at once (two concurrent ones deadlocked the 2-thread XLA CPU pool);
  the values are exactly the per-matrix ESDs."""
  import jax.numpy as jnp

  from models import steps
  from spectral.esd import esd

  rng = np.random.default_rng(0)
  mats = {name: jnp.asarray(rng.standard_normal((3,) + shape), jnp.float32)
          for name, shape in (("a", (8, 16)), ("b", (16, 8)), ("c", (12, 12)), ("d", (8, 32)))}
  dispatched = []

  def watched(w):
    # A concrete array in, every earlier result already computed (a traced call, as under jit, would fail here).
    assert all(r.is_ready() for r in dispatched), "an earlier ESD was still running"
    dispatched.append(esd(w))
    return dispatched[-1]

  monkeypatch.setattr(steps, "esd", watched)
  out = steps.spectra_of(mats)
  assert len(dispatched) == len(mats) and all(r.is_ready() for r in out.values())
  for name, w in mats.items():
    np.testing.assert_array_equal(np.asarray(out[name]), np.asarray(esd(w)))


def _entry_graph(hlo: str) -> tuple[dict[str, set[str]], dict[str, str]]:
  """Operands (every ``%name`` on the right-hand side) and text of each instruction of a compiled HLO's entry."""
  deps, lines = {}, {}
  for line in hlo[hlo.index("\nENTRY"):].splitlines()[1:]:
    m = re.match(r"\s*(?:ROOT\s+)?(%[\w.\-]+)\s*=(.*)", line)
    if m:
      deps[m.group(1)], lines[m.group(1)] = set(re.findall(r"%[\w.\-]+", m.group(2))), line
  return deps, lines


def _depends_on(deps: dict[str, set[str]], node: str, target: str) -> bool:
  seen, stack = set(), list(deps.get(node, ()))
  while stack:
    n = stack.pop()
    if n == target:
      return True
    if n not in seen:
      seen.add(n)
      stack.extend(deps.get(n, ()))
  return False


def test_after_orders_lapack_kernels_in_the_compiled_program():
  """``spectral.esd.after`` leaves a data path from one eigh kernel to the next in the *compiled* program (an
  optimization barrier did not: XLA's CPU compiler removed it), and changes no value."""
  import jax
  import jax.numpy as jnp

  from spectral.esd import after

  rng = np.random.default_rng(1)
  a, b = (jnp.asarray(rng.standard_normal((3, 6, 6)), jnp.float32) for _ in range(2))
  a, b = a + jnp.swapaxes(a, 1, 2), b + jnp.swapaxes(b, 1, 2)
  chained = jax.jit(lambda a, b: (lambda e1: (e1, jnp.linalg.eigvalsh(after(b, e1))))(jnp.linalg.eigvalsh(a)))
  free = jax.jit(lambda a, b: (jnp.linalg.eigvalsh(a), jnp.linalg.eigvalsh(b)))
  np.testing.assert_array_equal(np.asarray(chained(a, b)[1]), np.asarray(free(a, b)[1]))
  if jax.default_backend() == "cpu":
    for fn, ordered in ((chained, True), (free, False)):
      deps, lines = _entry_graph(fn.lower(a, b).compile().as_text())
      eighs = [n for n, line in lines.items() if "custom-call(" in line and "syevd" in line]
      assert len(eighs) == 2, eighs
      linked = _depends_on(deps, eighs[0], eighs[1]) or _depends_on(deps, eighs[1], eighs[0])
      assert linked == ordered, (fn, eighs)
  tokens = jnp.arange(5)
  assert np.array_equal(np.asarray(jax.jit(after)(tokens, a)), np.arange(5))
  assert after(tokens, None) is tokens
  assert np.isnan(np.asarray(after(jnp.ones(2), jnp.asarray([np.nan])))).all()
  assert np.array_equal(np.asarray(after(tokens, jnp.asarray([np.nan]))), np.zeros(5))
