#!/usr/bin/env bash
# Every benchmark of the lab on one accelerator machine, in one go, sized to finish in about 8 minutes.
# Output goes to ${OUT:-bench_out}/ (one text file per benchmark). Needs jax with an accelerator backend, flax,
# optax, orbax-checkpoint, scipy, tqdm from the machine's image; wheels in .whl/ (if present: weightwatcher, powerlaw,
# matplotlib-inline, traitlets) are installed into a fresh /tmp/site first. Do not carry flax/optax/orbax wheels: a
# flax built for another jax fails at import (flax 0.12.8 with jax 0.11.2 did).
set -u
OUT=${OUT:-bench_out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  rm -rf /tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/device.txt"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" \
  2>&1 | tee -a "$OUT/device.txt"
run() { local name=$1 limit=$2; shift 2; echo "=== $name"; timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt" | tail -25; }
run bench_weight_spectra 110 python3 bench/bench_weight_spectra.py --skip-ww
run bench_ensemble 200 python3 bench/bench_ensemble.py --widths 64,128,256,512 --steps 20 --device-report
run bench_hessian 100 python3 bench/bench_hessian.py --skip-tracking
run main_job 100 python3 -m lab main --runs /tmp/gpu_runs --no-progress
run bench_sweep 150 python3 bench/bench_sweep.py --steps 100 --seeds 2
