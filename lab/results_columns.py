"""The column dictionary of a sweep's ``results.csv`` (``lab.sweep.summarize``), written beside it as
``results_columns.md`` and shown in the README.

One row of ``results.csv`` is one sweep point x snapshot step x weight matrix. ``pack`` and ``member`` name the
ensemble member that trained the point, so ``python -m lab analyze --run <sweep folder>/runs/<pack> --member
<member>`` analyses its checkpointed weights. Eigenvalues are those of ``X = W^T W / N`` (``spectral.esd``); losses
are in nats per scored token (divide by ln 2 = 0.693 for bits per token, the unit of the figures).
"""

from __future__ import annotations

FIXED = {
    "point": "sweep point id, pt<index>-<hash of its values>; stable when the sweep grows",
    "pack": "the pack (one compiled ensemble) that trained the point: its run folder is <sweep folder>/runs/<pack>",
    "member": "the point's member index inside its pack (lab analyze --run <sweep folder>/runs/<pack> --member M)",
    "state": "pending, running, done or failed (failed: the member diverged or its pack raised; see manifest.json)",
    "step": "training step of the snapshot (0 = initialisation)",
    "matrix": "weight matrix name, as in run.json (e.g. blocks.0.mlp_out.kernel)",
}
AXIS = "a sweep axis: the point's value (member-level axes seed, p, learning_rate, weight_decay, init_scale; any " \
       "other axis is a dotted config key)"
SCALARS = {
    "test_loss": "held-out cross-entropy at the snapshot, nats per scored token (bits = nats / ln 2)",
    "test_accuracy": "held-out next-token accuracy at the snapshot, fraction in [0, 1]",
    "train_loss": "training cross-entropy at the last logged step <= the snapshot step, nats per scored token",
}
METRICS = {
    "alpha": "power-law exponent of the ESD tail (Clauset-Shalizi-Newman fit); no unit",
    "alpha_se": "standard error of alpha",
    "alpha_ks": "KS distance of the power-law fit, in [0, 1]",
    "xmin": "eigenvalue where the power-law tail starts (units of X = W^T W / N)",
    "n_tail": "eigenvalues in the power-law tail (count)",
    "lambda_max": "largest eigenvalue of X: squared spectral norm of W over N",
    "alpha_weighted": "alpha * log10(lambda_max) (Martin & Mahoney 2021)",
    "log10_spectral_norm": "log10(lambda_max)",
    "log10_frobenius_norm": "log10(sum of the eigenvalues): log10 of the squared Frobenius norm over N",
    "stable_rank": "squared Frobenius over squared spectral norm; between 1 and M",
    "entropy_rank": "exp(entropy of the normalised singular values) (Roy & Vetterli 2007); between 1 and M",
    "mp_sigma2": "Marchenko-Pastur sigma^2 fitted by the median (Gavish & Donoho 2014), units of squared entries",
    "mp_sigma2_estimator": "how mp_sigma2 was estimated: median (full spectrum) or trace (tail-only mode)",
    "numerical_rank": "eigenvalues above the round-off floor M * eps * lambda_max (count); only these enter fits",
    "alpha_status": "ok, or why the power-law fit failed (then alpha is empty)",
    "mp_edge": "MP bulk edge mp_sigma2 (1 + sqrt q)^2 (units of X)",
    "tw_threshold": "Tracy-Widom threshold at the false-alarm level 0.01 (units of X)",
    "n_outliers": "eigenvalues above tw_threshold (count)",
    "mp_ks": "KS distance between the bulk and MP(q, mp_sigma2), in [0, 1]",
    "spacing_ratio": "mean ratio of consecutive eigenvalue spacings (GOE 0.531, Poisson 0.386)",
    "spacing_ratio_se": "standard error of spacing_ratio",
}


def describe(column: str, axes=()) -> str:
  """The meaning of one column of ``results.csv`` (``axes``: the sweep's axis names)."""
  for table in (FIXED, SCALARS, METRICS):
    if column in table:
      return table[column]
  if column in axes:
    return AXIS
  return "see spectral/metrics.py"


def columns_markdown(columns, axes=()) -> str:
  """A Markdown table ``| column | meaning |`` for ``columns`` (the header of one results.csv)."""
  lines = ["# results.csv columns", "", __doc__.split("\n\n", 1)[1].strip(), "", "| column | meaning |",
           "| --- | --- |"]
  lines += [f"| `{c}` | {describe(c, axes)} |" for c in columns]  # no meaning holds a "|"
  return "\n".join(lines) + "\n"
