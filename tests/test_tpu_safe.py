"""The TPU-safe switch: no host callbacks and no float64 in compiled spectral code, same numbers as the default."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import members as members_lib
from models import steps
from models.config import with_overrides
from models.presets import tiny_config
from models.weight_matrices import weight_matrices
from spectral import analyze
from spectral import esd
from spectral import lanczos
from spectral import metrics
from spectral import tpu_safe


@pytest.fixture
def safe():
  tpu_safe.set_tpu_safe(True)
  yield
  tpu_safe.set_tpu_safe(None)


def _walk(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for v in eqn.params.values():
      for j in (v if isinstance(v, (list, tuple)) else [v]):
        inner = getattr(j, "jaxpr", None)
        if inner is not None and hasattr(inner, "eqns"):
          yield from _walk(inner)
        elif hasattr(j, "eqns"):
          yield from _walk(j)


def _callbacks_and_f64(closed) -> tuple[set[str], set[str]]:
  callbacks, wide = set(), set()
  for eqn in _walk(closed.jaxpr):
    if "callback" in eqn.primitive.name:
      callbacks.add(eqn.primitive.name)
    for v in (*eqn.invars, *eqn.outvars):
      if getattr(getattr(v, "aval", None), "dtype", None) == jnp.float64:
        wide.add(eqn.primitive.name)
  return callbacks, wide


def test_checker_sees_the_host_eigh_callback():
  ws = jnp.ones((1, 4, 6), jnp.float32)
  assert _callbacks_and_f64(jax.make_jaxpr(lambda w: esd.esd_oriented_batch(w, host_eigh=True))(ws))[0]
  assert not _callbacks_and_f64(jax.make_jaxpr(lambda w: esd.esd_oriented_batch(w, host_eigh=False))(ws))[0]


def test_training_step_snapshots_and_tracking_have_no_callbacks_or_float64():
  cfg = with_overrides(tiny_config("tpu"), {"tracking.track_jacobian": True, "tracking.track_hessian": True})
  members = members_lib.members_of(cfg)
  keys = jnp.stack([members_lib.member_key(cfg, m.seed_index) for m in members])
  hparams = members_lib.member_hparams(members)
  graphdef = members_lib.graphdef_of(cfg)
  state = jax.eval_shape(lambda: steps.init_state(cfg, keys, hparams))  # traced, not compiled
  step = steps.make_ensemble_step(cfg, graphdef, "vmap")
  track = steps.make_tracking(cfg, graphdef, "vmap")
  matrices = jax.eval_shape(lambda p: weight_matrices(p, ensemble_dims=1), state["params"])
  for closed in (jax.make_jaxpr(step)(state, hparams, keys, 0), jax.make_jaxpr(steps.spectra_of)(matrices),
                 jax.make_jaxpr(track)(state["params"], keys, hparams["noise_p"])):
    assert _callbacks_and_f64(closed) == (set(), set())


def test_tpu_safe_analysis_uses_device_eigh_in_float32_and_matches_the_default(safe, monkeypatch):
  rng = np.random.default_rng(0)
  mats = {"a": rng.standard_t(4, size=(48, 96)), "b": rng.standard_t(4, size=(48, 96))}  # float64 input
  seen = []
  original = esd.esd_oriented_batch

  def spy(ws, host_eigh=False):
    seen.append((ws.dtype, host_eigh))
    return original(ws, host_eigh=host_eigh)

  monkeypatch.setattr(esd, "esd_oriented_batch", spy)
  with jax.enable_x64(True):
    safe_rows = analyze.analyze(mats, backend="jax")
    assert lanczos.default_float_dtype() == jnp.float32
  assert seen and all(dtype == jnp.float32 and not host for dtype, host in seen)
  tpu_safe.set_tpu_safe(False)
  default_rows = analyze.analyze({k: v.astype(np.float32) for k, v in mats.items()}, backend="jax")
  assert analyze.resolve_backend("auto") == "numpy"
  for a, b in zip(safe_rows, default_rows):
    assert a["n_tail"] == b["n_tail"] and a["n_outliers"] == b["n_outliers"]
    assert a["status"] == b["status"]
    for k in metrics.METRIC_NAMES:
      if isinstance(b[k], str) or b[k] is None:  # mp_sigma2_estimator, alpha_status; n_outliers with no MP bulk
        assert a[k] == b[k], k
      else:
        assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-7, nan_ok=True), k


def test_switch_follows_the_environment(monkeypatch):
  tpu_safe.set_tpu_safe(None)
  monkeypatch.setenv("SPECTRAL_TPU_SAFE", "1")
  assert tpu_safe.tpu_safe() and analyze.resolve_backend("auto") == "jax"
  monkeypatch.setenv("SPECTRAL_TPU_SAFE", "0")
  assert tpu_safe.tpu_safe() == (jax.default_backend() == "tpu")
