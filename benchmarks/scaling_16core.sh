#!/usr/bin/env bash
# The 1/2/4/8/16-thread scaling run, prepared as one command for a 16-core machine such as those the
# device tool lends (Python 3.12 with numpy, PyTorch, CMake, ninja, pybind11 and scikit-build-core;
# no network, so Eigen travels as a wheel). It builds rbp-native there (AVX-512 variant only), then
# times rbp-native, numpy and PyTorch on the MNIST net and the wide net at batch 32 and 128 (bp and
# srbp, synthetic data of the MNIST shape) at every thread count, and writes the results file
# (JSON and markdown) into $OUT, or benchmarks/results when OUT is unset.
#
# From a session with a lent machine, in the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl cmeel-eigen
#   device run: command "bash benchmarks/scaling_16core.sh", carry [".whl"], timeout_s 560
#
# THREADS, ROUNDS, EPOCHS and NETS override the defaults (a quick local check, in an environment without
# rbp-native installed -- an editable install would take precedence over PYTHONPATH, and the script stops
# when the import does not come from its own build: THREADS=1,2 NETS=mnist OUT=/tmp/scaling bash
# benchmarks/scaling_16core.sh).
#
# The build leaves oneDNN out (RBP_NATIVE_ONEDNN=OFF): the MLPs do not use it, and a module installed with
# --target could not find libdnnl at run time through its RPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1

site="${SCALING_SITE:-/tmp/rbp-scaling-site}"
rm -rf "$site"
mkdir -p "$site"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"

cores="$(nproc)"
echo "[scaling] $(date -u +%FT%TZ) building rbp-native (avx512) on ${cores} cores"
CMAKE_ARGS="-DRBP_NATIVE_ISAS=avx512 -DRBP_NATIVE_ONEDNN=OFF" CMAKE_BUILD_PARALLEL_LEVEL="${cores}" \
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" .
python3 - "$site" <<'EOF'
import os
import sys

import rbp_native

if not os.path.realpath(rbp_native.__file__).startswith(os.path.realpath(sys.argv[1]) + os.sep):
    sys.exit(f"[scaling] rbp_native comes from {rbp_native.__file__}, not from the build in {sys.argv[1]}: "
             "run this where rbp-native is not installed (an editable install takes precedence over PYTHONPATH)")
print("[scaling] rbp-native", rbp_native.__version__, rbp_native.isa)
EOF

out="${OUT:-benchmarks/results}"
echo "[scaling] $(date -u +%FT%TZ) benchmark"
# The package's source tree is not on the path: run.py imports the build installed above.
python3 benchmarks/run.py \
  --threads "${THREADS:-1,2,4,8,16}" \
  --nets "${NETS:-mnist,wide}" --batches 32,128 --algorithms bp,srbp \
  --impls rbp-native,numpy,torch \
  --rounds "${ROUNDS:-1}" --epochs "${EPOCHS:-3}" \
  --data auto --no-native-bench --timeout 400 \
  --out "$out"
echo "[scaling] $(date -u +%FT%TZ) done: results in $out"
