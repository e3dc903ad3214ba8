"""Analyse a mapping name -> weight matrix into a per-matrix table of spectral metrics (``spectral.metrics``).

All valid matrices of one (oriented) shape are analysed together: one jit-compiled batched computation forms the
Gram matrices and their eigenvalues (on CPU the eigenvalue step runs in host LAPACK inside the compiled computation,
see ``esd.esd_oriented_batch``), then the vectorised metrics. Conventions: ``spectral.esd`` (``X = W_s W_s^T / N``).

Rules:
- 3-D attention kernels ``(d_model, heads, head_dim)`` are analysed fused as ``(d_model, heads * head_dim)``; with
  ``per_head=True`` also each head ``(d_model, head_dim)`` as ``"<name>[head=h]"``.
- Every entry gets a row and the analysis never stops on one: a bad matrix (NaN/Inf, rank above 3, empty or 1 x n,
  all zeros, integer dtype) gets ``status = "error: ..."`` naming the problem and ``None`` metrics; a 0-D or 1-D
  array (a bias, a scale) gets ``"skipped: ..."``. bf16/fp16 are upcast to float32.
- Eigenvalues at or below the round-off floor ``M eps lambda_max`` (``spectral.metrics``) stay out of the fits and
  ``numerical_rank`` counts the rest. A matrix whose power-law fit failed (fewer than ``min_tail = 10`` valid
  eigenvalues, e.g. a 2 x 3 or a rank-1 matrix) or that has no MP bulk (median eigenvalue at the floor) gets
  ``status = "fit failed: ..."`` with the reasons and the numerical rank; its failed metrics are NaN / ``None``.
- ``randomize=True`` adds ``rand_<metric>`` columns: the same metrics on an entry-shuffled copy of each matrix
  (on CPU ``spectral.shuffle.permute`` with numpy's ``default_rng([seed, row index])``, on accelerators ``fold_in(key(seed), row index)``), the noise
  baseline with the same entry distribution.
- Tail-only mode for matrices whose ``M`` exceeds ``max_full_dim`` (or every matrix when ``tail_k`` is set): the top
  ``tail_k`` eigenvalues by matrix-free subspace iteration (``esd.esd_top_k``), the power-law fit restricted to
  them, norms from ``W`` directly, ``mp_sigma2`` by the trace estimator ``||W||_F^2 / (N M)`` (biased up by spikes,
  hence conservative for ``n_outliers``; ``mp_sigma2_estimator = "trace"``, where the full mode writes ``"median"``);
  metrics needing the whole spectrum are ``None``. Status ``"ok (tail-only)"``.
- ``backend="numpy"``: eigenvalues by numpy/LAPACK (``esd.esd_oriented_batch_host``) and metrics by
  ``spectral.host_metrics``, nothing compiled (the fast choice for one-off shapes on a CPU); ``"auto"`` picks it on a
  CPU backend unless the TPU-safe switch is on, and ``"jax"`` elsewhere.
- Under the TPU-safe switch (``spectral.tpu_safe``) the compiled path uses no host callback and no float64.
- ``keep_spectra=True`` adds ``eigenvalues`` (and ``rand_eigenvalues``) to each row: the ascending ESD (the top
  ``k`` in tail-only mode), for plots.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from spectral import esd as esd_lib
from spectral import metrics as metrics_lib
from spectral import outliers
from spectral import power_law
from spectral import shuffle
from spectral import tpu_safe


def _as_float_array(x) -> np.ndarray:
  arr = np.asarray(x)
  if arr.dtype.kind == "V" or str(arr.dtype) in ("bfloat16", "float16"):
    arr = np.asarray(jnp.asarray(x, jnp.float32))
  return arr


def expand_matrices(matrices: Mapping[str, object], per_head: bool = False) -> list[tuple[str, object]]:
  """Name -> array pairs to analyse: 3-D kernels fused (and per head on request); others passed through."""
  out = []
  for name, x in matrices.items():
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) == 3:
      d, h, k = shape
      arr = _as_float_array(x)
      out.append((name, arr.reshape(d, h * k)))
      if per_head:
        out.extend((f"{name}[head={i}]", arr[:, i, :]) for i in range(h))
    else:
      out.append((name, x))
  return out


def _validated(name: str, x) -> tuple[np.ndarray | None, str]:
  try:
    if getattr(x, "shape", None) is None:
      x = np.asarray(x)
    if len(x.shape) < 2:
      return None, (f"skipped: {len(x.shape)}-D array of shape {tuple(x.shape)} (not a matrix: no spectrum; "
                    "biases and scales are vectors)")
    if str(getattr(x, "dtype", "")) in ("bfloat16", "float16"):
      x = _as_float_array(x)
    esd_lib.validate_matrix(x, name)
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
      arr = arr.astype(np.float32)
    return arr, "ok"
  except (ValueError, TypeError) as err:
    return None, f"error: {err}"


def _host_eigh() -> bool:
  return jax.default_backend() == "cpu" and not tpu_safe.tpu_safe()


def resolve_backend(backend: str) -> str:
  """``"auto"`` -> ``"numpy"`` on a CPU backend (unless TPU-safe), else ``"jax"``; other values are checked."""
  if backend not in ("auto", "jax", "numpy"):
    raise ValueError(f"backend: expected 'auto', 'jax' or 'numpy', got {backend!r}")
  if backend == "auto":
    return "numpy" if _host_eigh() else "jax"
  return backend


def _oriented(arr: np.ndarray) -> np.ndarray:
  return arr if arr.shape[0] <= arr.shape[1] else arr.T


def _status(row: dict, m: int, ok: str) -> str:
  """``ok`` unless a fit failed: then the reasons and the numerical rank (module docstring)."""
  problems = []
  if row["alpha_status"] != "ok":
    problems.append(f"power law {row['alpha_status']}")
  if row["n_outliers"] is None:
    problems.append("no Marchenko-Pastur bulk (the median eigenvalue is at the round-off floor)")
  if not problems:
    return ok
  rank = row["numerical_rank"]
  rank = f"numerical rank {rank} of {m}" if rank is not None else "numerical rank unknown (tail-only)"
  return f"fit failed: {'; '.join(problems)}; {rank} (eigenvalues <= M eps lambda_max are round-off)"


def _tail_metrics(arr: np.ndarray, k: int, level: float, seed: int, ks: str, keep_spectra: bool = False) -> dict:
  n, m = max(arr.shape), min(arr.shape)
  top = np.sort(np.asarray(esd_lib.esd_top_k(arr.astype(np.float32, copy=False), k, seed=seed), np.float64))
  resolved = top > metrics_lib.rank_floor(top[-1], m, np.float32)
  fit = power_law.fit_power_law(top, resolved, ks=ks)
  # ||W||_F^2 in float64, a block of rows at a time (no float64 copy of a matrix that may be gigabytes).
  fro2 = sum(float(np.sum(np.square(arr[i:i + 1024], dtype=np.float64))) for i in range(0, arr.shape[0], 1024)) / n
  res = outliers.mp_outliers(top[None], arr.shape, level=level, sigma2=fro2 / m, estimator="trace")
  row = dict.fromkeys(metrics_lib.METRIC_NAMES)
  row.update(alpha=float(fit.alpha), alpha_se=float(fit.alpha_se), alpha_ks=float(fit.ks), xmin=float(fit.xmin),
             n_tail=int(fit.n_tail), lambda_max=float(top[-1]), alpha_weighted=float(fit.alpha * np.log10(top[-1])),
             log10_spectral_norm=float(np.log10(top[-1])), log10_frobenius_norm=float(np.log10(fro2)),
             stable_rank=fro2 / float(top[-1]), mp_sigma2=float(res.sigma2[0]), mp_sigma2_estimator=res.estimator,
             mp_edge=float(res.edge[0]), tw_threshold=float(res.threshold[0]), n_outliers=int(res.n_outliers[0]),
             alpha_status=power_law.fit_status_message(fit.status, fit.n_valid),
             numerical_rank=int(resolved.sum()) if not resolved.all() else None)
  if keep_spectra:
    row["eigenvalues"] = top
  return row


def analyze(matrices: Mapping[str, object], *, level: float = 0.01, randomize: bool = False, seed: int = 0,
            per_head: bool = False, ks: str = "powerlaw", tail_k: int | None = None,
            max_full_dim: int = 8192, backend: str = "jax", keep_spectra: bool = False) -> list[dict]:
  """Per-matrix spectral metrics for a mapping ``name -> matrix``.

  Args:
    matrices: name -> 2-D matrix (numpy, JAX, bf16/fp16 accepted) or 3-D attention kernel.
    level: false-alarm level of the Tracy-Widom outlier count.
    randomize: also compute ``rand_<metric>`` on entry-shuffled copies (seeded).
    seed: integer seed of the shuffles (per row, see the module docstring) and of tail-only iterations.
    per_head: also analyse each head of 3-D kernels.
    ks: KS convention of the power-law fit: ``"powerlaw"`` (default; the powerlaw package's and WeightWatcher's
      xmin), ``"clauset"`` or ``"sup"`` (``spectral.power_law``).
    tail_k: if set, use tail-only mode with this many top eigenvalues for every matrix.
    max_full_dim: matrices with ``min(shape) > max_full_dim`` use tail-only mode (``tail_k`` or 500 eigenvalues).
    backend: ``"jax"`` (compiled, batched), ``"numpy"`` (host, nothing compiled) or ``"auto"`` (module docstring).
    keep_spectra: also return each ESD as ``eigenvalues`` (and ``rand_eigenvalues``) numpy arrays.

  Returns:
    One dict per analysed matrix, in input order: ``name``, ``shape``, ``status`` and the metric names of
    ``spectral.metrics.METRIC_NAMES`` (plus ``rand_*`` with ``randomize``).
  """
  if not isinstance(matrices, Mapping):
    raise TypeError(f"matrices: expected a mapping name -> array, got {type(matrices).__name__}")
  backend = resolve_backend(backend)
  entries = expand_matrices(matrices, per_head)
  rows: list[dict] = []
  groups: dict[tuple[int, int], list[int]] = {}
  arrays: dict[int, np.ndarray] = {}
  keys_all = list(metrics_lib.METRIC_NAMES) + ([f"rand_{k}" for k in metrics_lib.METRIC_NAMES] if randomize else [])
  for i, (name, x) in enumerate(entries):
    arr, status = _validated(name, x)
    shape = tuple(int(s) for s in getattr(x, "shape", ()))
    rows.append({"name": name, "shape": shape, "status": status, **dict.fromkeys(keys_all)})
    if arr is None:
      continue
    m = min(arr.shape)
    if tail_k is not None or m > max_full_dim:
      k = min(m, tail_k or 500)
      rows[i].update(_tail_metrics(arr, k, level, seed, ks, keep_spectra))
      rows[i]["status"] = _status(rows[i], m, "ok (tail-only)")
      if randomize:
        flat = shuffle.permute(arr, np.random.default_rng([seed, i]))
        rows[i].update({f"rand_{k_}": v for k_, v in _tail_metrics(flat, k, level, seed, ks, keep_spectra).items()})
      continue
    arrays[i] = arr
    groups.setdefault((m, max(arr.shape)), []).append(i)

  host = _host_eigh()
  numpy_path = backend == "numpy"
  wide = jax.config.jax_enable_x64 and not tpu_safe.tpu_safe()
  base = jax.random.key(seed)
  for (m, n), idx in groups.items():
    dtype = np.float64 if (wide or numpy_path) and any(arrays[i].dtype == np.float64 for i in idx) else np.float32
    batch = np.stack([_oriented(arrays[i]).astype(dtype, copy=False) for i in idx])
    if numpy_path:
      ev = esd_lib.esd_oriented_batch_host(batch)
    else:
      ev = esd_lib.esd_oriented_batch(jnp.asarray(batch), host_eigh=host)
    ev = np.asarray(ev)
    for j, (i, row) in enumerate(zip(idx, metrics_lib.batch_metrics(ev, (m, n), level=level, ks=ks,
                                                                      backend=backend))):
      rows[i].update(row, status=_status(row, m, "ok"))
      if keep_spectra:
        rows[i]["eigenvalues"] = ev[j]
    if randomize:
      if host or numpy_path:
        # On CPU an O(n) host shuffle is ~50x faster than XLA's sort-based permutation; seeded by (seed, row).
        shuffled = np.stack([shuffle.permute(b, np.random.default_rng([seed, i])) for i, b in zip(idx, batch)])
        if numpy_path:
          rev = esd_lib.esd_oriented_batch_host(shuffled)
        else:
          rev = esd_lib.esd_oriented_batch(jnp.asarray(shuffled), host_eigh=True)
      else:
        keys = jnp.stack([jax.random.fold_in(base, i) for i in idx])
        rev = esd_lib.shuffled_esd_oriented_batch(jnp.asarray(batch), keys, host_eigh=False)
      rev = np.asarray(rev)
      for j, (i, row) in enumerate(zip(idx, metrics_lib.batch_metrics(rev, (m, n), level=level, ks=ks,
                                                                        backend=backend))):
        rows[i].update({f"rand_{k}": v for k, v in row.items()})
        if keep_spectra:
          rows[i]["rand_eigenvalues"] = rev[j]
  return rows


def _validated_init(name: str, x, shape) -> tuple[np.ndarray | None, str]:
  """An initial value for ``name``: finite, floating, of ``shape`` (all zeros allowed, unlike a matrix)."""
  if x is None:
    return None, f"error: no init for {name}"
  arr = _as_float_array(x)
  if arr.shape != tuple(shape):
    return None, f"error: init of {name} has shape {arr.shape}, expected {tuple(shape)}"
  if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)):
    return None, f"error: init of {name} is not a finite floating array"
  return arr, "ok"


STRUCTURE_COLUMNS = ("structure_rank", "structure_status", "top_s", "top_component", "top_overlap", "top_side")


def with_structure_columns(rows: list[dict], structure_rows=()) -> list[dict]:
  """``rows`` (of ``analyze``) with every ``STRUCTURE_COLUMNS`` key set from the ``structure_table`` row of the same
  name, ``None`` where there is none (no structure computed: the columns stay part of the table, empty)."""
  by_name = {r["name"]: r for r in structure_rows}
  for row in rows:
    more = by_name.get(row["name"], {})
    row.update({k: more.get(k) for k in STRUCTURE_COLUMNS})
  return rows


def structure_table(matrices: Mapping[str, object], *, inits: Mapping[str, object] | None = None,
                    level: float = 0.01, seed: int = 0, per_head: bool = False, subspaces=None,
                    threshold: float = 0.5) -> list[dict]:
  """Structure rank (``spectral.structure``) and the top component's attribution for every analysed matrix.

  Args:
    matrices: name -> matrix, expanded as in ``analyze`` (3-D attention kernels fused, per head on request).
    inits: optional name -> initial value; each matrix with one is analysed as the update ``W - W0`` (a missing
      or mis-shaped init is an error status for that matrix).
    level: false-alarm level of the structure test.
    seed: seed of the sign flips.
    per_head: as in ``analyze``.
    subspaces: ``None``; a mapping name -> basis (n, d), matched to each matrix's sides by row count
      (``spectral.attribution.split_by_side``); or a mapping matrix name -> (left, right) dicts of bases.
    threshold: overlap a subspace must reach to name the top component (else ``"other"``).

  All matrices go to one ``structure.structure_rank_many`` call: matrices of one shape share a batch, and small
  shapes are zero-padded into shared batches where that saves compilation (``spectral.shape_buckets``). Every
  matrix uses ``seed``; its first round's draws are those of its own shape, whatever else is analysed with it.

  Returns:
    One dict per analysed matrix, in ``expand_matrices`` order: ``name`` and ``STRUCTURE_COLUMNS``: the rank,
    the test's status, the top component's singular value (of ``X / sqrt(N)``) and its best named match
    (``top_component``, ``top_overlap``, ``top_side``; ``None`` without subspaces or structure).
  """
  from spectral import attribution
  from spectral import structure as structure_lib

  entries = expand_matrices(matrices, per_head)
  init_entries = dict(expand_matrices(inits, per_head)) if inits is not None else None
  rows, members = [], []
  for i, (name, x) in enumerate(entries):
    rows.append({"name": name, **dict.fromkeys(STRUCTURE_COLUMNS)})
    arr, status = _validated(name, x)
    init = None
    if arr is not None and init_entries is not None:
      init, status = _validated_init(name, init_entries.get(name), arr.shape)
      if init is None:
        arr = None
    if arr is None:
      rows[i]["structure_status"] = status
      continue
    members.append((i, arr, init))
  if members:
    results = structure_lib.structure_rank_many(
        [a for _, a, _ in members], inits=[z for _, _, z in members] if init_entries is not None else None,
        level=level, seed=seed)
    for (i, arr, _), res in zip(members, results):
      shape = arr.shape
      row = rows[i]
      row.update(structure_rank=res.rank, structure_status=res.status)
      if res.rank <= 0:
        continue
      row["top_s"] = float(res.s[0])
      if subspaces is None:
        continue
      if row["name"] in subspaces and isinstance(subspaces[row["name"]], tuple):
        left, right = subspaces[row["name"]]
      else:
        left, right = attribution.split_by_side(
            {k: b for k, b in subspaces.items() if not isinstance(b, tuple)}, shape)
      best = attribution.attribute_components(res.u[:, :1], res.v[:, :1], left, right, threshold)[0]
      if best["best"] is not None:
        row.update(top_side=best["best"][0], top_component=best["best"][1], top_overlap=float(best["best"][2]))
      elif left or right:
        overlaps = [m[1] for m in (best["left"], best["right"]) if m is not None]
        row.update(top_component=attribution.OTHER, top_overlap=float(max(overlaps)))
  return rows
