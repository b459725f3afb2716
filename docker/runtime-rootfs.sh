#!/usr/bin/env bash
# Assembles the greenfed runtime image's file tree (docker/Dockerfile, stage `rootfs`) from the
# Debian packages installed in the build stage: no file comes from anywhere else.
#
#   runtime-rootfs.sh --out DIR --binary PATH --tools-dir DIR [--stub-unused 1|0]
#
# DIR gets (and DIR-owned, for the files the container user owns, copied with --chown):
#   /usr/local/bin/greenfed            the binary
#   /usr/local/bin/greenfed-entrypoint docker/entrypoint.sh;  /usr/local/bin/greenfed-keys docker/keys.sh
#   /usr/bin/{bash,sh,env,timeout,...} the tools the two scripts use, and a shell for `docker exec`
#   /usr/lib/x86_64-linux-gnu/<soname> every shared object `ldd` resolves for the above, each as a
#                                      regular file named by its soname (alternatives resolved)
#   /usr/share/datasets/fashion-mnist  the data set (package dataset-fashion-mnist)
#   /etc/{passwd,group,nsswitch.conf,ld.so.cache}, /tmp (1777); DIR-owned: /results, /home/greenfed
# With --stub-unused 1 (default) the libraries libtorch_cpu needs only for caffe2's image and video
# operators (OpenCV, FFmpeg: the STUB_RE below) are replaced by stubs (docker/make-stub-lib.sh),
# so their own dependency trees (GDAL, Qt, codecs, ...) are not copied.
# Then it checks the tree from inside (chroot): `greenfed --help`, the entrypoint, and a 1-epoch
# centralized training on 200 images. Exit: 0 ok, 1 failure, 2 usage. Runs as root (chroot).
set -euo pipefail

readonly PROG=runtime-rootfs.sh
readonly LIBDIR=usr/lib/x86_64-linux-gnu
readonly STUB_RE='^lib(opencv_[a-z0-9_]+|avcodec|avformat|avutil|swscale|swresample)\.so'
readonly TOOLS=(bash dash env timeout dirname basename id cat ls mkdir rm mv date sleep getent)
readonly DATA=/usr/share/datasets/fashion-mnist

die() { echo "$PROG: $*" >&2; exit 1; }
usage() { echo "usage: $PROG --out DIR --binary PATH --tools-dir DIR [--stub-unused 1|0]" >&2; exit 2; }

out='' binary='' tools_dir='' stub_unused=1
while (($#)); do
  case "$1" in
    --out) out=${2:-}; shift 2 ;;
    --binary) binary=${2:-}; shift 2 ;;
    --tools-dir) tools_dir=${2:-}; shift 2 ;;
    --stub-unused) stub_unused=${2:-}; shift 2 ;;
    *) usage ;;
  esac
done
[[ -n "$out" && -x "$binary" && -d "$tools_dir" ]] || usage
[[ "$stub_unused" == 0 || "$stub_unused" == 1 ]] || usage
[[ -d "$DATA" ]] || die "$DATA is missing (install dataset-fashion-mnist)"
owned=$out-owned

rm -rf -- "$out" "$owned"
mkdir -p "$out"/{usr/bin,usr/sbin,usr/lib64,usr/local/bin,$LIBDIR,etc,tmp,root} \
  "$owned"/{results,home/greenfed}
chmod 1777 "$out/tmp"
chmod 0700 "$out/root"
# Debian 12's merged /usr.
ln -s usr/bin "$out/bin"; ln -s usr/sbin "$out/sbin"; ln -s usr/lib "$out/lib"; ln -s usr/lib64 "$out/lib64"

stubs=$(mktemp -d "${TMPDIR:-/tmp}/greenfed-stubs.XXXXXX")
trap 'rm -rf -- "$stubs"' EXIT

# The stubs: libraries libtorch_cpu itself needs that match STUB_RE.
if ((stub_unused)); then
  torch_cpu=$(ldd "$binary" | awk '$1 ~ /^libtorch_cpu\.so/ {print $3}')
  [[ -n "$torch_cpu" ]] || die "$binary does not link libtorch_cpu"
  needed=$(readelf -dW "$torch_cpu" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
  while read -r soname arrow path _; do
    [[ "$arrow" == "=>" && "$soname" =~ $STUB_RE ]] || continue
    grep -qxF -- "$soname" <<<"$needed" || continue
    bash "$tools_dir/make-stub-lib.sh" "$path" "$stubs" >/dev/null
  done < <(ldd "$torch_cpu")
  echo "$PROG: $(find "$stubs" -name 'lib*' | wc -l) stub libraries for libtorch_cpu's unused dependencies"
fi

# copy_closure EXE: copies EXE's shared objects (with the stubs first on the search path) into the
# tree; `ldd -r` also performs the relocations, so a symbol missing from a stub is an error here.
copy_closure() {
  local exe=$1 report
  report=$(LD_LIBRARY_PATH=$stubs ldd -r "$exe" 2>&1) || die "ldd -r $exe failed: $report"
  if grep -E 'not found|undefined symbol' <<<"$report"; then
    die "$exe: unresolved libraries or symbols (above)"
  fi
  local soname arrow path
  while read -r soname arrow path _; do
    [[ "$arrow" == "=>" && -n "$path" ]] || continue
    [[ -e "$out/$LIBDIR/$soname" ]] || cp -L -- "$path" "$out/$LIBDIR/$soname"
  done <<<"$report"
}

install -m 0755 "$binary" "$out/usr/local/bin/greenfed"
install -m 0755 "$tools_dir/entrypoint.sh" "$out/usr/local/bin/greenfed-entrypoint"
install -m 0755 "$tools_dir/keys.sh" "$out/usr/local/bin/greenfed-keys"
copy_closure "$binary"
# The binary names its BLAS by RUNPATH (cmake/Blas.cmake: OpenBLAS (pthread build, one thread) by default); in the tree
# that directory does not exist and the copy, under its soname, is found in $LIBDIR instead.
echo "$PROG: libtorch's BLAS: $(ldd "$binary" | awk '$1 == "libblas.so.3" {print $3}') -> /$LIBDIR/libblas.so.3"
for tool in "${TOOLS[@]}"; do
  src=$(command -v "$tool") || die "tool $tool is not installed"
  install -m 0755 "$(readlink -f "$src")" "$out/usr/bin/$tool"
  copy_closure "$src"
done
ln -s dash "$out/usr/bin/sh"
# The program interpreter, at the path every binary names (/lib64/ld-linux-x86-64.so.2).
interp=$(readelf -lW "$binary" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
[[ -n "$interp" ]] || die "no program interpreter in $binary"
cp -L -- "$interp" "$out/$LIBDIR/$(basename "$interp")"
[[ -e "$out$interp" ]] || ln -s "/$LIBDIR/$(basename "$interp")" "$out$interp"

mkdir -p "$out$(dirname "$DATA")"
cp -a -- "$DATA" "$out$DATA"

cat >"$out/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/bin/bash
greenfed:x:10001:10001:greenfed:/home/greenfed:/usr/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/bin/bash
EOF
cat >"$out/etc/group" <<'EOF'
root:x:0:
greenfed:x:10001:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/etc/nsswitch.conf"
: >"$out/etc/ld.so.conf"
ldconfig -r "$out"

# Checks. In a chroot (only the tree's files; LD_BIND_NOW resolves every symbol of every library
# at load): greenfed --help and the entrypoint. A chroot in a build has no /proc, which libtorch
# needs to train, so the training runs outside it with the tree's loader and libraries first on
# the search path: that proves the stubs are not called on the training path.
LD_BIND_NOW=1 chroot "$out" /usr/local/bin/greenfed --help >/dev/null ||
  die "greenfed --help fails inside the tree"
chroot "$out" /usr/bin/env GREENFED_ROLE=countries /usr/local/bin/greenfed-entrypoint >/dev/null 2>&1 ||
  die "the entrypoint fails inside the tree"
"$out$interp" --library-path "$out/$LIBDIR" "$out/usr/local/bin/greenfed" centralized \
  --data-dir "$out$DATA" --max-train-examples 200 --max-test-examples 100 --max-epochs 1 \
  --run-dir "$out/tmp/smoke" >/dev/null 2>"$stubs/smoke.log" ||
  { cat "$stubs/smoke.log" >&2; die "a 1-epoch training with the tree's libraries fails"; }
rm -rf -- "$out/tmp/smoke"
rm -f -- "$out/var/cache/ldconfig/aux-cache"
echo "$PROG: $(find "$out/$LIBDIR" -name '*.so*' | wc -l) shared objects," \
  "$(du -sm "$out" | cut -f1) MiB in $out (stubs: $stub_unused)"
