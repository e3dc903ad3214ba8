"""The TPU-safe switch: compiled code with no float64 and no host callbacks.

TPUs have no native float64 and cannot run a host callback (``jax.pure_callback``) inside a compiled computation
efficiently, if at all. When the switch is on:

- ``spectral.analyze`` computes eigenvalues with ``jnp.linalg.eigvalsh`` on the device (no ``pure_callback`` into
  host LAPACK, the CPU default) and in float32 even when ``jax_enable_x64`` is on and the input is float64;
- ``spectral.lanczos`` (Hessian/Jacobian spectra during training) works in float32 under ``jax_enable_x64``.

Training itself (``models``) never asks for float64 or callbacks; ``tests/test_tpu_safe.py`` checks the jaxprs of
the training step and of the analysis for both, and that the TPU-safe analysis gives the default path's numbers to
float32 tolerance.

The switch is on when ``set_tpu_safe(True)`` was called, or the environment variable ``SPECTRAL_TPU_SAFE`` is
``1``/``true``/``yes``, or (automatically) when JAX's default backend is a TPU; ``set_tpu_safe(False)`` forces it off.
"""

from __future__ import annotations

import os

import jax

_FORCED: bool | None = None


def set_tpu_safe(on: bool | None) -> None:
  """Force the switch on (True) or off (False); ``None`` returns to the automatic rule."""
  global _FORCED
  _FORCED = None if on is None else bool(on)


def tpu_safe() -> bool:
  """Whether compiled spectral code must avoid float64 and host callbacks (see the module docstring)."""
  if _FORCED is not None:
    return _FORCED
  if os.environ.get("SPECTRAL_TPU_SAFE", "").strip().lower() in ("1", "true", "yes"):
    return True
  return jax.default_backend() == "tpu"
