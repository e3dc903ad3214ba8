"""Model variants and the deep MLP: shapes, stated variances, causality by gradients, Jacobian at init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.config import ModelConfig
from models.mlp import MLPConfig, init_mlp_params, input_output_jacobian
from models.transformer import Transformer, init_variance
from models.weight_matrices import weight_matrices

VARIANTS = [dict(), dict(init="orthogonal", norm="post"), dict(init="flax_default", tie_embeddings=True),
            dict(block="attn_only", norm="none", activation="linear"), dict(block="mlp_only", activation="relu")]


@pytest.mark.parametrize("kw", VARIANTS)
def test_causality_by_gradients(kw):
  """d logits[:, t] / d embeddings[:, s] = 0 for every s > t: future tokens never influence earlier logits."""
  cfg = ModelConfig(d_model=16, num_heads=2, num_layers=2, **kw)
  model = Transformer(cfg, 11, 6, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  tokens = jnp.arange(6, dtype=jnp.int32)[None] % 11
  x0 = model.embed_tokens(tokens)

  def logits_from(x):
    return nnx.merge(graphdef, params).logits_from_embeddings(x)

  np.testing.assert_allclose(np.asarray(logits_from(x0)), np.asarray(model(tokens)), rtol=1e-5, atol=1e-6)
  jac = np.asarray(jax.jit(jax.jacrev(lambda x: logits_from(x).sum(-1)[0]))(x0))[:, 0]  # (t, s, D)
  norms = np.abs(jac).sum(-1)
  assert np.all(norms[np.triu_indices(6, 1)] == 0.0)
  if kw.get("block") != "mlp_only":  # with attention, the past does influence the present
    assert np.all(norms[np.tril_indices(6, -1)] > 0)


# Widths large enough that every matrix has >= 8192 entries: the relative SE of a mean square is then <= 1.6%, so the
# Bonferroni z-bound below (3.9 SE over 9 matrices) is under 7% and rejects a truncated normal that is not
# rescaled (variance 0.774x, Flax's LeCun normal without its 1 / 0.8796 correction) by 30 SE (measured).
VARIANCE_CFG = dict(d_model=128, num_heads=4, num_layers=1, init_scale=1.5)
VOCAB, SEQ_LEN = 64, 64


def initial_weights(init: str):
  cfg = ModelConfig(init=init, **VARIANCE_CFG)
  return cfg, weight_matrices(nnx.state(Transformer(cfg, VOCAB, SEQ_LEN, rngs=nnx.Rngs(1)), nnx.Param))


def variance_z_scores(cfg, ws, family: float = 1e-3) -> tuple[dict[str, float], float]:
  """Per weight matrix, ``(mean(w^2) - stated variance) / SE`` (SE from the entries' own spread of ``w^2``), and the
  two-sided Bonferroni bound at ``family`` over the matrices."""
  from scipy import stats

  z = {}
  for name, w in ws.items():
    w2 = np.asarray(w, np.float64).ravel() ** 2
    se = max(w2.std(ddof=1) / np.sqrt(w2.size), 1e-12 * w2.mean())  # orthogonal: the mean square is exact
    z[name] = float((w2.mean() - init_variance(name, cfg)) / se)
  return z, float(stats.norm.ppf(1 - family / (2 * len(z))))


@pytest.mark.parametrize("init", ["gaussian", "orthogonal", "flax_default"])
def test_stated_init_variances(init):
  cfg, ws = initial_weights(init)
  z, bound = variance_z_scores(cfg, ws)
  assert all(abs(v) <= bound for v in z.values()), (bound, z)
  if init == "orthogonal":
    q = np.asarray(ws["blocks.0.mlp_in.kernel"], np.float64)  # (128, 512): orthonormal rows, scaled
    np.testing.assert_allclose(q @ q.T, np.eye(128) * 1.5**2 * 512 / 128, atol=1e-4)


def _lecun_truncated_without_correction(*args, **kwargs):
  """LeCun truncated normal whose truncation at 2 sd is not compensated: entry variance 0.8796^2 = 0.774 / fan_in."""
  return jax.nn.initializers.variance_scaling(0.87962566103423978**2, "fan_in", "truncated_normal")


def test_stated_init_variance_rejects_uncorrected_truncated_normal(monkeypatch):
  # A wrong Flax default (truncation not rescaled) must be caught on every kernel it initialises; the embeddings keep
  # their untruncated normal and still pass.
  monkeypatch.setattr(nnx.initializers, "lecun_normal", _lecun_truncated_without_correction)
  z, bound = variance_z_scores(*initial_weights("flax_default"))
  embeddings = ("embed.embedding", "pos_embed")
  kernels = {k: v for k, v in z.items() if k not in embeddings}
  assert len(kernels) == len(z) - 2 and all(v < -bound for v in kernels.values()), (bound, z)
  assert all(abs(z[k]) <= bound for k in embeddings), (bound, z)


def test_deep_linear_orthogonal_mlp_is_an_isometry_and_gaussian_is_not():
  x = jax.random.normal(jax.random.PRNGKey(0), (32,))
  g, p = init_mlp_params(MLPConfig(width=32, depth=6, activation="linear", init="orthogonal"), jax.random.PRNGKey(1))
  s = np.linalg.svd(np.asarray(input_output_jacobian(g, p, x)), compute_uv=False)
  np.testing.assert_allclose(s, 1.0, atol=1e-4)
  g, p = init_mlp_params(MLPConfig(width=32, depth=6, activation="linear"), jax.random.PRNGKey(1))
  s = np.linalg.svd(np.asarray(input_output_jacobian(g, p, x)), compute_uv=False)
  assert s.max() / s.min() > 10
  assert sorted(weight_matrices(p)) == [f"layers.{i}.kernel" for i in range(6)]


def test_bad_model_configs():
  with pytest.raises(ValueError, match="model.init"):
    ModelConfig(init="xavier")
  with pytest.raises(ValueError, match="model.norm"):
    ModelConfig(norm="rms")
  with pytest.raises(ValueError, match="mlp.activation"):
    MLPConfig(activation="gelu")
