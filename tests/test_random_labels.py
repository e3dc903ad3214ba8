"""Check 8 (random_labels): the measurement path on planted embeddings with a known answer (K key frequencies and a
structure rank of 2K), the verdict rule on measured planted cases (a Fourier embedding PASSes, an embedding with
extra non-Fourier directions FAILs, missing premises are INCONCLUSIVE), and the whole check on tiny runs (slow)."""

import numpy as np
import pytest

from spectral.attribution import fourier_basis, fourier_power, key_frequencies, key_frequencies_by_mass
from theory_checks import random_labels as rl

P, D = 23, 64


def planted(freqs, seed, *, extra=0, noise=0.1, dc=0.0):
  """A residue-by-width embedding: K Fourier modes (sin and cos, random amplitudes per column), ``extra`` random
  non-Fourier rank-one directions, an optional constant row offset, plus iid Gaussian noise of std ``noise``."""
  rng = np.random.default_rng(seed)
  x = sum((fourier_basis(P, k) @ rng.normal(size=(2, D)) for k in freqs), np.zeros((P, D)))
  for _ in range(extra):
    x += np.outer(rng.normal(size=P), rng.normal(size=D)) / np.sqrt(P)
  x += dc * np.outer(fourier_basis(P, 0)[:, 0], rng.normal(size=D))
  return x + noise * rng.normal(size=(P, D))


def test_fourier_power_is_a_parseval_split():
  x = np.random.default_rng(0).normal(size=(P, 5))
  power = fourier_power(x)
  assert power.shape == (P // 2 + 1,)
  assert power.sum() == pytest.approx(np.sum(x**2))
  one = fourier_basis(P, 4) @ np.ones((2, 3))
  assert np.argmax(fourier_power(one)) == 4 and fourier_power(one)[4] == pytest.approx(np.sum(one**2))
  with pytest.raises(ValueError, match="x"):
    fourier_power(np.zeros((1, 3)))


def test_key_frequencies_find_planted_modes_and_nothing_in_noise():
  for freqs in [(2,), (3, 7), (1, 5, 9, 11)]:
    for seed in range(3):
      x = planted(freqs, seed)
      assert key_frequencies(x, seed=seed) == list(freqs)
      assert key_frequencies_by_mass(planted(freqs, seed, noise=0.02)) == list(freqs)
  false = sum(len(key_frequencies(np.random.default_rng(s).normal(size=(P, D)), seed=s)) > 0 for s in range(20))
  assert false <= 2  # level 0.01 per matrix: Binomial(20, 0.01) 99.9% quantile is 2
  with pytest.raises(ValueError, match="draws"):
    key_frequencies(np.ones((P, 2)), draws=10)
  with pytest.raises(ValueError, match="mass"):
    key_frequencies_by_mass(np.ones((P, 2)), mass=0.0)


def test_mass_rule_overcounts_noise_that_the_floor_rule_ignores():
  x = planted((3,), 0, noise=0.15)  # noise holds a visible share of the power in every other mode
  assert key_frequencies(x, seed=0) == [3]
  assert len(key_frequencies_by_mass(x)) > 1


REAL_FREQS = [(2, 5), (1, 4, 8), (3,)]


@pytest.fixture(scope="module")
def measured():
  """One measured batch (one compiled structure test) of planted members: generalising (Fourier modes plus a
  constant offset), memorising (random low-rank embeddings) and wrong (one mode plus three random directions)."""
  rng = np.random.default_rng(5)
  real = [planted(f, s, dc=1.0) for s, f in enumerate(REAL_FREQS)]
  memo = [0.3 * rng.normal(size=(P, 6)) @ rng.normal(size=(6, D)) + 0.1 * rng.normal(size=(P, D)) for _ in range(3)]
  wrong = [planted((2 + s,), 10 + s, extra=3, noise=0.02) for s in range(3)]
  e = np.stack(real + memo + wrong)
  emb = rl.embedding_structure(e, np.zeros_like(e), P, seed=1)
  rows = lambda ms, acc: [dict(seed_index=i, weight_decay=1.0, train_accuracy=1.0, test_accuracy=acc, train_loss=0.01,
                               embedding=m) for i, m in enumerate(ms)]
  return rows(emb[:3], 1.0), rows(emb[3:6], 0.04), rows(emb[6:], 1.0)


def test_embedding_structure_measures_2k_on_a_planted_embedding(measured):
  real, memo, wrong = measured
  for f, row in zip(REAL_FREQS, real):
    m = row["embedding"]
    assert m["key"] == list(f) and m["K"] == len(f) and m["key_mass90"] == list(f)
    w = m["W"]
    assert w["dc"] == 1 and w["nondc"] == 2 * len(f) and w["key"] == 2 * len(f)
    assert w["fourier"] == 2 * len(f) and w["fourier_modes"] == list(f)
  for row in memo:  # six random directions: structured, no Fourier mode captured
    assert row["embedding"]["W"]["nondc"] == 6 and row["embedding"]["W"]["fourier"] == 0
  for s, row in enumerate(wrong):
    # three extra random directions: structured, spread over every mode (so above the noise floor in many), and not
    # captured as Fourier modes: the rank is not 2K
    m = row["embedding"]
    assert m["W"]["nondc"] == 5 and m["W"]["fourier_modes"] == [2 + s] and m["K"] > 3


def test_judge_passes_the_planted_generalising_case(measured):
  real, memo, _ = measured
  status, facts = rl.judge_condition(real, memo)
  assert status == "PASS", facts
  assert facts["rank_minus_2K"] == [0, 0, 0] and facts["contrast_status"] == "PASS"
  assert facts["fourier_fraction_real"] == [1.0, 1.0, 1.0]
  assert facts["fourier_random"] == [0, 0, 0]


def test_judge_fails_the_planted_wrong_cases(measured):
  real, memo, wrong = measured
  status, facts = rl.judge_condition(wrong, memo)
  assert status == "FAIL" and facts["fourier_status"] == "FAIL"
  assert all(d < -1 for d in facts["rank_minus_2K"])
  status, facts = rl.judge_condition(real, real)  # a "memoriser" with the same Fourier embedding: no contrast
  assert status == "FAIL" and facts["fourier_status"] == "PASS" and facts["contrast_status"] == "FAIL"


def test_judge_is_inconclusive_without_its_premises(measured):
  real, memo, _ = measured
  assert rl.judge_condition([dict(r, test_accuracy=0.5) for r in real], memo)[0] == "INCONCLUSIVE"
  status, facts = rl.judge_condition(real, [dict(r, train_accuracy=0.6) for r in memo])
  assert status == "INCONCLUSIVE" and facts["fourier_status"] == "PASS"
  assert rl.combine(["INCONCLUSIVE", "PASS"]) == "PASS"
  assert rl.combine(["PASS", "FAIL"]) == "FAIL"
  assert rl.combine(["INCONCLUSIVE"]) == "INCONCLUSIVE"


def test_t_interval():
  out = rl.t_interval([1.0, 2.0, 3.0])
  assert out["mean"] == pytest.approx(2.0)
  assert out["hi"] - out["mean"] == pytest.approx(4.302652729749464 / np.sqrt(3))  # t_{0.975, 2} s / sqrt(3)
  assert rl.t_interval([2.0, 2.0])["lo"] == 2.0


def test_design_refuses_a_split_without_the_real_fraction():
  with pytest.raises(ValueError, match="fractions"):
    rl.Design(modulus=23, train_fraction=0.5, fractions=(0.3,), weight_decays=(1.0,), fraction_weight_decays=(1.0,),
              seeds=2, fraction_seeds=2, d_model=16, num_heads=2, steps=10, learning_rate=1e-3)


@pytest.mark.slow
def test_check_runs_on_tiny_runs(tmp_path):
  """The whole path on tiny runs: training, whole-split evaluation, dW from regenerated initial weights."""
  from models.run_folder import load_run
  from models.train import train_run

  from tests.test_checks_calibration import assert_well_formed
  design = rl.Design(modulus=7, train_fraction=0.5, fractions=(0.5, 0.3), weight_decays=(1.0,),
                     fraction_weight_decays=(1.0,), seeds=2, fraction_seeds=1, d_model=16, num_heads=2, steps=20,
                     learning_rate=3e-3)
  real_cfg, rand_cfgs = rl.configs(design, "test")
  real = load_run(train_run(real_cfg, tmp_path, progress=False))
  rand = [load_run(train_run(c, tmp_path, progress=False)) for c in rand_cfgs]
  verdict = rl.check_runs(real, rand, design)
  assert_well_formed(verdict)
  assert verdict.status == "INCONCLUSIVE"  # 20 steps: nothing generalised
  members = [d for d in verdict.details if d.get("part") == "member"]
  assert len(members) == 5 and {m["train_pairs"] for m in members} == {24, 15}
  assert all(m["structure_rank_dW"] > 0 for m in members)  # trained: the update is not zero


def test_effective_ranks_match_batch_metrics():
  from spectral.metrics import batch_metrics, effective_ranks
  x = np.random.default_rng(2).normal(size=(3, 12, 30))
  x[0] = np.outer(np.ones(12), np.arange(30.0))  # rank one: both ranks 1
  s = np.linalg.svd(x, compute_uv=False)
  stable, entropy = effective_ranks(s)
  rows = batch_metrics(s**2 / 30, (12, 30), backend="numpy")
  np.testing.assert_allclose(stable, [r["stable_rank"] for r in rows], rtol=1e-6)
  np.testing.assert_allclose(entropy, [r["entropy_rank"] for r in rows], rtol=1e-6)
  assert stable[0] == pytest.approx(1.0) and entropy[0] == pytest.approx(1.0, abs=1e-6)
  assert np.all(np.isnan(effective_ranks(np.zeros(4))))
