"""Spectral metrics of stored ESDs, as figures use them (computed from run-folder eigenvalues only).

``spectral.metrics.batch_metrics`` defines every metric (Clauset-Shalizi-Newman alpha, median-fitted MP sigma^2,
Johnstone-Ma Tracy-Widom outlier count at false-alarm ``LEVEL``, bulk KS distance, spacing ratio). Convention:
``spectral.esd`` (eigenvalues of ``X = W_s W_s^T / N``).
"""

from __future__ import annotations

import re

import numpy as np

from models.run_folder import Run
from spectral import metrics as metrics_lib

LEVEL = 0.01  # Tracy-Widom false-alarm level of the outlier count in every figure


def member_metrics(run: Run, step: int, matrix: str, level: float = LEVEL) -> list[dict]:
  """Per member (in ``run.members`` order) the ``spectral.metrics`` dict of ``matrix`` at snapshot ``step``."""
  check_snapshot(run, step, matrix)
  ev = run.spectra[step][matrix].astype(np.float64)
  rows = metrics_lib.batch_metrics(ev, run.info["matrices"][matrix]["shape"], level=level)
  return [rows[m["index"]] for m in run.members]


def check_snapshot(run: Run, step: int, matrix: str | None = None) -> None:
  if step not in run.spectra:
    raise KeyError(f"run {run.name}: no snapshot at step {step}; available {sorted(run.spectra)}")
  if matrix is not None and matrix not in run.spectra[step]:
    raise KeyError(f"run {run.name}: no matrix {matrix!r}; available {sorted(run.spectra[step])}")


def regimes(run: Run) -> list[tuple[str, float | None, list[dict]]]:
  """(regime, noise p, members) in the run's order."""
  out: dict[str, tuple[str, float | None, list[dict]]] = {}
  for m in run.members:
    out.setdefault(m["regime"], (m["regime"], m.get("noise_p"), []))[2].append(m)
  return list(out.values())


def block_matrices(run: Run, kind: str = "mlp_out") -> list[str]:
  """Names ``blocks.<i>.<kind>.kernel`` present in the run, by block index."""
  names = [n for n in run.info["matrices"] if re.fullmatch(rf"blocks\.\d+\.{re.escape(kind)}\.kernel", n)]
  return sorted(names, key=lambda n: int(n.split(".")[1]))


def default_matrix(run: Run) -> str:
  """The last block's MLP output matrix (where the pilot found the clearest spikes), else the first matrix."""
  names = block_matrices(run)
  return names[-1] if names else sorted(run.info["matrices"])[0]


def default_matrices(run: Run) -> list[str]:
  """First and last blocks' MLP output matrices (one if the model has one block)."""
  names = block_matrices(run)
  if not names:
    return [sorted(run.info["matrices"])[0]]
  return list(dict.fromkeys([names[0], names[-1]]))
