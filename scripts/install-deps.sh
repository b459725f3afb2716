#!/usr/bin/env bash
# Installs greenfed's dependencies from the Debian 12 (bookworm) archive. Idempotent: packages
# already installed are skipped, and `apt-get update` runs only when something is missing.
# Runs as root, or through sudo otherwise. No downloads outside apt, no pip.
#
# Usage: scripts/install-deps.sh [--all | --build | --runtime] [--dry-run]
#   --all      (default) build deps + test tools (iproute2 for tests/netns_test.sh,
#              python3-yaml for tests/compose_check.sh, clang/llvm for scripts/test_harden.sh)
#              + the Fashion-MNIST package + python3-sklearn (digits.csv.gz for the digits task)
#   --build    what compiling `greenfed` needs (the Docker build stage)
#   --runtime  the shared libraries the `greenfed` binary loads + the data set
#              (the Docker runtime stage; see docs/deployment.md for how the list was derived)
#   --dry-run  print the missing packages and exit without installing
set -euo pipefail

readonly BUILD_PKGS=(
  build-essential cmake
  libtorch-dev          # CPU libtorch 1.13 (examples/fashion_mnist)
  libopenblas0-pthread  # libtorch's BLAS in greenfed's binaries (cmake/Blas.cmake), run at 1 thread
  libzmq3-dev cppzmq-dev
  libmsgpack-cxx-dev    # header-only, CMake target msgpackc-cxx
  libssl-dev zlib1g-dev
  nlohmann-json3-dev    # header-only
  libtomlplusplus-dev   # --config FILE (TOML)
  doctest-dev
)
readonly TEST_PKGS=(iproute2 python3 python3-yaml docker-compose)
# scripts/test_harden.sh: clang 14, its sanitizer and libFuzzer runtimes, llvm-symbolizer for stacks.
readonly HARDEN_PKGS=(clang libclang-rt-14-dev llvm)
readonly DATA_PKGS=(dataset-fashion-mnist)
# The digits task (examples/digits) reads sklearn/datasets/data/digits.csv.gz, which only
# python3-sklearn ships (python3-sklearn-lib has the compiled parts, not the data). It pulls
# Python, NumPy and SciPy, so it is in --all (tests, `greenfed compare --task digits`) but not
# in --runtime: the Docker image stays Fashion-MNIST-only; mount the file to run digits there.
readonly DIGITS_PKGS=(python3-sklearn)
# Runtime: the packages owning the libraries in `readelf -d build/apps/greenfed | grep NEEDED`
# (libtorch_cpu/libtorch/libc10, libzmq, libz, libstdc++, libgcc_s, libc). libtorch1.13 then pulls
# its own large dependency closure (OpenBLAS, oneDNN, protobuf, OpenCV, FFmpeg, GDAL, Qt).
# libopenblas0-pthread: the binary NEEDs its libblas.so.3 through RUNPATH (cmake/Blas.cmake).
readonly RUNTIME_PKGS=(libtorch1.13 libopenblas0-pthread libzmq5 libssl3 zlib1g libtomlplusplus3 libstdc++6 libgcc-s1)

mode=all
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --all|--build|--runtime) mode=${arg#--} ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-deps.sh: unknown argument '$arg' (expected --all, --build, --runtime, --dry-run)" >&2
       exit 2 ;;
  esac
done

case "$mode" in
  all) wanted=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${HARDEN_PKGS[@]}" "${DATA_PKGS[@]}" "${DIGITS_PKGS[@]}") ;;
  build) wanted=("${BUILD_PKGS[@]}") ;;
  runtime) wanted=("${RUNTIME_PKGS[@]}" "${DATA_PKGS[@]}") ;;
esac

missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != installed ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps.sh: all ${#wanted[@]} packages for --$mode are installed"
  exit 0
fi
echo "install-deps.sh: missing for --$mode: ${missing[*]}"
if ((dry_run)); then
  exit 0
fi

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps.sh: not root and sudo is not installed; run as root to install: ${missing[*]}" >&2
  exit 1
fi

# libopenblas0-pthread registers itself for libblas.so.3/liblapack.so.3 at priority 100, above the
# reference BLAS (10): installed in auto mode it would switch every program on the machine to
# OpenBLAS. greenfed does not need that (its binaries name OpenBLAS's directory in their RUNPATH),
# so an existing selection is kept: set to itself, which makes it manual.
if [[ " ${missing[*]} " == *" libopenblas0-pthread "* ]]; then
  for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
    current=$(update-alternatives --query "$alt" 2>/dev/null | sed -n 's/^Value: //p' || true)
    if [[ -n "$current" ]]; then
      "${as_root[@]}" update-alternatives --set "$alt" "$current" >/dev/null
      echo "install-deps.sh: keeping $alt at $current (greenfed binds to OpenBLAS itself)"
    fi
  done
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
