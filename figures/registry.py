"""Registry of paper figures: name -> module. Each module defines ``NAME``, ``INPUT``, ``DESCRIPTION``,
``plotted_numbers(...)`` (pure: what the sidecar JSON holds) and ``make_figure(...)``.

``INPUT`` says what a figure reads:
- ``"run"``: one run folder, ``make_figure(run, out_dir, columns=...)``;
- ``"runs"``: a list of run folders (e.g. a sweep plus a natural-text run), ``make_figure(runs, out_dir, ...)``;
- ``"check"``: the stored ``Verdict`` of the check named by the module's ``CHECK``,
  ``make_figure(verdict, out_dir, columns=...)``; the module's ``SERIES`` documents the series it reads.
"""

from __future__ import annotations

import importlib
from types import ModuleType

FIGURE_MODULES = ("esd_by_regime", "esd_tail", "metrics_evolution", "meso_curve", "spacing_ratios", "tw_histogram",
                  "bbp_transition", "jacobian_spectra", "hessian_spectrum", "teacher_overlap", "structure_rank_vs_k",
                  "trained_jacobians", "structure_decomposition", "early_warning")


def figure_names() -> list[str]:
  return list(FIGURE_MODULES)


def get_figure(name: str) -> ModuleType:
  if name not in FIGURE_MODULES:
    raise KeyError(f"figure {name!r} unknown; available: {', '.join(FIGURE_MODULES)}")
  return importlib.import_module(f"figures.{name}")
