"""The whole-mapping analysis: batching by shape, bad matrices, attention kernels, randomized baseline, tail mode."""

import jax.numpy as jnp
import numpy as np
import pytest

from spectral import analyze as analyze_lib
from spectral import esd as esd_lib
from spectral import metrics


@pytest.fixture(scope="module")
def rows():
  rng = np.random.default_rng(0)
  mats = {
      "a": rng.normal(size=(40, 100)).astype(np.float32),
      "b": rng.standard_t(3, size=(100, 40)).astype(np.float32),  # same oriented shape as "a": one batch
      "attn.query.kernel": rng.normal(size=(40, 4, 10)).astype(np.float32),
      "nan": np.full((8, 8), np.nan), "vector": np.ones(5), "ints": np.ones((4, 4), int),
      "row": np.ones((1, 5)), "zeros": np.zeros((4, 6), np.float32), "empty": np.zeros((0, 3)),
      "bf16": jnp.asarray(rng.normal(size=(24, 40)), jnp.bfloat16),
  }
  return {r["name"]: r for r in analyze_lib.analyze(mats, randomize=True, per_head=True, seed=3)}


def test_rows_and_statuses(rows):
  assert rows["a"]["status"] == "ok" and rows["b"]["status"] == "ok" and rows["bf16"]["status"] == "ok"
  for name, word in [("nan", "NaN"), ("ints", "floating"), ("row", "1 x n"), ("zeros", "all zeros"),
                     ("empty", "both dimensions")]:
    assert rows[name]["status"].startswith("error") and word in rows[name]["status"], rows[name]["status"]
    assert name in rows[name]["status"] and rows[name]["alpha"] is None
  # A vector is not dropped silently: it has its row, saying it was skipped.
  assert rows["vector"]["status"].startswith("skipped: 1-D array of shape (5,)") and rows["vector"]["alpha"] is None


def test_every_bad_input_gets_a_row_never_a_traceback():
  rng = np.random.default_rng(4)
  mats = {"small": rng.normal(size=(2, 3)), "ones": np.ones((30, 60), np.float32),
          "rank5": (rng.normal(size=(40, 5)) @ rng.normal(size=(5, 80))).astype(np.float32),
          "scalar": np.float32(2.0), "fine": rng.normal(size=(30, 60)).astype(np.float32)}
  rows = {r["name"]: r for r in analyze_lib.analyze(mats)}
  # 2 x 3: two eigenvalues, no spacing ratio and too few for a power law (it used to raise in spacing_ratio).
  small = rows["small"]
  assert small["status"].startswith("fit failed") and "2 valid values, fewer than min_tail = 10" in small["status"]
  assert np.isnan(small["alpha"]) and np.isnan(small["spacing_ratio"]) and small["numerical_rank"] == 2
  assert small["lambda_max"] > 0 and small["n_outliers"] is not None
  # All ones: rank 1 (lambda_max = ||W||_2^2 / N = 30 x 60 / 60); the other 29 eigenvalues are round-off
  # (<= M eps lambda_max) and enter no fit, so there is no alpha (it used to be 1.19, fitted on round-off) and no MP
  # bulk.
  ones = rows["ones"]
  assert ones["numerical_rank"] == 1 and np.isnan(ones["alpha"]) and ones["n_outliers"] is None
  assert ones["status"].startswith("fit failed") and "numerical rank 1 of 30" in ones["status"]
  assert ones["lambda_max"] == pytest.approx(30.0, rel=1e-6) and ones["stable_rank"] == pytest.approx(1.0, rel=1e-5)
  assert rows["rank5"]["numerical_rank"] == 5 and "numerical rank 5 of 40" in rows["rank5"]["status"]
  assert rows["scalar"]["status"].startswith("skipped: 0-D array")
  fine = rows["fine"]
  assert fine["status"] == "ok" and fine["numerical_rank"] == 30 and fine["alpha_status"] == "ok"


def test_metrics_agree_with_float64_reference(rows):
  w = np.random.default_rng(0).normal(size=(40, 100)).astype(np.float32)
  ref = metrics.matrix_metrics(esd_lib.esd_reference(w), w.shape)
  for k in ("lambda_max", "stable_rank", "mp_sigma2", "log10_frobenius_norm"):
    assert rows["a"][k] == pytest.approx(ref[k], rel=1e-5), k
  assert rows["a"]["n_outliers"] == ref["n_outliers"]
  assert rows["a"]["mp_sigma2_estimator"] == ref["mp_sigma2_estimator"] == "median"


def test_attention_fused_and_per_head(rows):
  assert rows["attn.query.kernel"]["shape"] == (40, 40) and rows["attn.query.kernel"]["status"] == "ok"
  assert all(f"attn.query.kernel[head={h}]" in rows for h in range(4))


def test_randomized_baseline(rows):
  r = rows["b"]
  assert r["rand_alpha"] is not None
  # Shuffling keeps the entries, hence the Frobenius norm, exactly.
  assert r["rand_log10_frobenius_norm"] == pytest.approx(r["log10_frobenius_norm"], abs=1e-5)
  assert r["rand_lambda_max"] <= r["lambda_max"] * 1.5


def test_tail_only_mode_matches_full_top_eigenvalues():
  w = np.random.default_rng(5).standard_t(3, size=(150, 400)).astype(np.float32)
  top = np.sort(np.asarray(esd_lib.esd_top_k(w, 20, iters=20)))
  ref = esd_lib.esd_reference(w)[-20:]
  np.testing.assert_allclose(top, ref, rtol=2e-3)
  row = analyze_lib.analyze({"w": w}, tail_k=20)[0]
  assert row["status"] == "ok (tail-only)" and row["entropy_rank"] is None
  assert row["lambda_max"] == pytest.approx(ref[-1], rel=1e-4)
  # The table says which sigma^2 estimator it used: here the trace ||W||_F^2 / (N M).
  assert row["mp_sigma2_estimator"] == "trace"
  assert row["mp_sigma2"] == pytest.approx(np.sum(w.astype(np.float64) ** 2) / w.size, rel=1e-12)


def test_not_a_mapping():
  with pytest.raises(TypeError, match="matrices"):
    analyze_lib.analyze([np.ones((3, 3))])
