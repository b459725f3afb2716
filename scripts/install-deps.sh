#!/usr/bin/env bash
# Installs greenfed's dependencies from the Debian 12 (bookworm) archive. Idempotent: packages
# already installed are skipped, and `apt-get update` runs only when something is missing.
# Runs as root, or through sudo otherwise. No downloads outside apt, no pip.
#
# Usage: scripts/install-deps.sh [--all | --build | --runtime] [--dry-run]
#   --all      (default) build deps + test tools (iproute2 for tests/netns_test.sh,
#              python3-yaml for tests/compose_check.sh, clang/llvm for scripts/test_harden.sh)
#              + the Fashion-MNIST package
#   --build    what compiling `greenfed` needs (the Docker build stage)
#   --runtime  the shared libraries the `greenfed` binary loads + the data set
#              (the Docker runtime stage; see docs/deployment.md for how the list was derived)
#   --dry-run  print the missing packages and exit without installing
set -euo pipefail

readonly BUILD_PKGS=(
  build-essential cmake
  libtorch-dev          # CPU libtorch 1.13 (examples/fashion_mnist)
  libopenblas0-serial   # BLAS for libtorch's linear layers, see below
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
# Runtime: the packages owning the libraries in `readelf -d build/apps/greenfed | grep NEEDED`
# (libtorch_cpu/libtorch/libc10, libzmq, libz, libstdc++, libgcc_s, libc). libtorch1.13 then pulls
# its own large dependency closure (OpenBLAS, oneDNN, protobuf, OpenCV, FFmpeg, GDAL, Qt).
# libopenblas0-serial: libtorch1.13 links libblas.so.3, which is Debian's reference BLAS unless an
# optimised one provides the alternative. OpenBLAS (single-threaded build: no spinning threads)
# cuts the CNN's fc1 forward+backward ~17x and a Fit's CPU-s to ~0.57x (docs/benchmarks.md,
# "Kernel levers"); weights then differ from the reference BLAS by float rounding.
readonly RUNTIME_PKGS=(libtorch1.13 libopenblas0-serial libzmq5 libssl3 zlib1g libtomlplusplus3 libstdc++6 libgcc-s1)

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
  all) wanted=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${HARDEN_PKGS[@]}" "${DATA_PKGS[@]}") ;;
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

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
# libopenblas0-serial registers its libblas.so.3 at priority 90 (reference BLAS 10, but
# libopenblas0-pthread 100): set it explicitly, so that a pthread build pulled in by something
# else, with its spinning threads, does not win.
serial_blas=/usr/lib/x86_64-linux-gnu/openblas-serial/libblas.so.3
if [[ -e "$serial_blas" ]]; then
  "${as_root[@]}" update-alternatives --set libblas.so.3-x86_64-linux-gnu "$serial_blas"
fi
