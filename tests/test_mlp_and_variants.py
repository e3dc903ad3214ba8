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


@pytest.mark.parametrize("init", ["gaussian", "orthogonal", "flax_default"])
def test_stated_init_variances(init):
  cfg = ModelConfig(d_model=64, num_heads=4, num_layers=1, init=init, init_scale=1.5)
  ws = weight_matrices(nnx.state(Transformer(cfg, 64, 16, rngs=nnx.Rngs(1)), nnx.Param))
  for name, w in ws.items():
    w = np.asarray(w, np.float64)
    var = init_variance(name, cfg)
    se = var * np.sqrt(2.0 / w.size) * 3 + (0 if init != "orthogonal" else 0)
    assert abs(np.mean(w**2) - var) < 4 * se, name
  q = np.asarray(ws["blocks.0.mlp_in.kernel"], np.float64)  # (64, 256): orthonormal rows when orthogonal
  if init == "orthogonal":
    np.testing.assert_allclose(q @ q.T, np.eye(64) * 1.5**2 * 256 / 64, atol=1e-4)


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
