#!/usr/bin/env bash
# Builds the core and its bindings with AddressSanitizer + UndefinedBehaviorSanitizer into a virtual
# environment of their own (build/sanitize/, never the developer's install), then runs the native and
# training tests under it. Exits non-zero on any sanitizer report, test failure or build failure.
#
#   tests/sanitizers.sh                      # the default test files below
#   tests/sanitizers.sh tests/test_native.py -k forward    # any pytest arguments instead
#
# Environment: RBP_SANITIZE_ISA (instruction-set variant to build, default avx2: every x86-64 CI machine
# of the last decade runs it), RBP_SANITIZE_DIR (default build/sanitize: the venv and the CMake build
# folder, reused by the next run so that only changed sources are rebuilt), CXX (the compiler; its own
# libasan is preloaded).
set -euo pipefail
cd "$(dirname "$0")/.."

isa="${RBP_SANITIZE_ISA:-avx2}"
work="${RBP_SANITIZE_DIR:-build/sanitize}"
venv="$work/venv"
cxx="${CXX:-c++}"
if [ "$#" -gt 0 ]; then
  tests=("$@")
else
  tests=(tests/test_native.py tests/test_training.py tests/test_channels.py tests/test_checkpoints.py
         tests/test_products.py tests/test_sparse_layer.py tests/test_fuzz.py)
fi

# CPython is not instrumented, so the ASan runtime must be the first library loaded: preload the one
# that belongs to the compiler that builds the module (a mismatched runtime aborts at import).
asan_runtime="$("$cxx" -print-file-name=libasan.so)"
if [ ! -f "$asan_runtime" ]; then
  echo "sanitizers.sh: $cxx has no AddressSanitizer runtime (libasan.so); install it (Debian: libasan8)" >&2
  exit 2
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --quiet scikit-build-core pybind11 cmeel-eigen ninja numpy tqdm pytest hypothesis scipy

# -O1 keeps the run fast enough while the reports still point at the right lines; no NDEBUG, so
# Eigen's and the core's own assertions are checked as well. Blind spot: Eigen pads its aligned heap
# blocks (up to 32 bytes with AVX), so an overrun that stays inside that padding goes unreported. -fno-sanitize-recover makes UBSan abort
# on its first report instead of printing and carrying on.
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g"
start=$SECONDS
python -m pip install --quiet --no-build-isolation --no-deps --force-reinstall . \
  -Cbuild-dir="$work/build-$isa" \
  -Ccmake.build-type=RelWithDebInfo \
  -Ccmake.define.CMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -Ccmake.define.CMAKE_CXX_FLAGS="$flags" \
  -Ccmake.define.RBP_NATIVE_ISAS="$isa"
echo "sanitizers.sh: built the $isa core with ASan + UBSan in $((SECONDS - start)) s"

# Reports go to files as well as the exit status: pytest captures the test's stderr and loses it
# when the process dies mid-test, and tests that run the package in subprocesses hide theirs.
reports="$(cd "$work" && pwd)/reports"
rm -rf "$reports"
mkdir -p "$reports"
# libstdc++ right after it: ASan resolves its __cxa_throw interceptor when it starts, and CPython does
# not link libstdc++, so without it the first C++ exception (a Python error inside a callback) aborts
# with "CHECK failed: real___cxa_throw != 0".
export LD_PRELOAD="$asan_runtime $("$cxx" -print-file-name=libstdc++.so)"
# CPython leaks by design (interned objects, arenas kept until exit): leak reports would be noise.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=99:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=99:log_path=$reports/ubsan"
export RBP_NATIVE_ISA="$isa"

# The installed module, not a stray build elsewhere: it must link the ASan runtime.
python - <<'EOF'
import rbp_native, rbp_native._native as native
path = native._core.__file__
with open(path, "rb") as handle:
    if b"__asan_init" not in handle.read():
        raise SystemExit(f"sanitizers.sh: {path} is not built with AddressSanitizer")
print(f"sanitizers.sh: testing {path} (isa {rbp_native.isa})")
EOF

start=$SECONDS
status=0
python -m pytest -p no:cacheprovider -q "${tests[@]}" || status=$?
echo "sanitizers.sh: tests ran in $((SECONDS - start)) s, exit status $status"
if compgen -G "$reports/*" > /dev/null; then
  for report in "$reports"/*; do
    echo "=== $report"
    cat "$report"
  done
  echo "sanitizers.sh: sanitizer reports above (also in $reports/)" >&2
  [ "$status" -ne 0 ] || status=98
fi
exit "$status"
