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
  for name, word in [("nan", "NaN"), ("vector", "rank 1"), ("ints", "floating"), ("row", "1 x n"),
                     ("zeros", "all zeros"), ("empty", "both dimensions")]:
    assert rows[name]["status"].startswith("error") and word in rows[name]["status"], rows[name]["status"]
    assert name in rows[name]["status"] and rows[name]["alpha"] is None


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
