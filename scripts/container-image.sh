#!/usr/bin/env bash
# Builds the container image from the release binary without pulling a base
# image (for machines that reach no image registry; elsewhere the Dockerfile's
# multi-stage build does the same): a root file system of the binary, every
# library ldd says it links (at the same paths, the dynamic loader included),
# /etc/passwd and /etc/group with the nonroot user 65532 and an empty /tmp,
# then `buildah bud` of deploy/container/Containerfile (FROM scratch, COPY
# only). Needs buildah (Debian's package).
#
#   scripts/container-image.sh [TAG]        # default sqlalchemy-collectd-exporter:local
#
# SCE_BINARY names the binary (default: cargo build --release, then
# $CARGO_TARGET_DIR or target/, release/sqlalchemy-collectd-exporter);
# BUILDAH_OPTS adds buildah's global options, e.g. "--root DIR --runroot DIR
# --storage-driver vfs" (vfs works where overlay mounts are not permitted).
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-sqlalchemy-collectd-exporter:local}"
if [ -z "${SCE_BINARY:-}" ]; then
  cargo build --release --locked --bin sqlalchemy-collectd-exporter
  SCE_BINARY="${CARGO_TARGET_DIR:-target}/release/sqlalchemy-collectd-exporter"
fi
command -v buildah >/dev/null || { echo "buildah is missing: apt-get install buildah" >&2; exit 1; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$stage/storage"
install -m 0755 "$SCE_BINARY" "$root/usr/local/bin/sqlalchemy-collectd-exporter"
# "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" and the loader's
# "/lib64/ld-linux-x86-64.so.2 (0x…)"; linux-vdso is the kernel's.
libs="$(ldd "$SCE_BINARY" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')"
[ -n "$libs" ] || { echo "ldd lists no libraries for $SCE_BINARY" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
chmod 1777 "$root/tmp"
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP

version="$("$SCE_BINARY" --version | awk '{print $2}')"
revision="$("$SCE_BINARY" --version | sed -n 's/.*(rev \([^,)]*\).*/\1/p')"
# shellcheck disable=SC2086 # BUILDAH_OPTS is a list of options
buildah ${BUILDAH_OPTS:-} bud --quiet --isolation chroot \
  --build-arg SCE_VERSION="$version" --build-arg SCE_GIT_REVISION="$revision" \
  -f deploy/container/Containerfile -t "$tag" "$stage"
echo "built $tag: $SCE_BINARY and $(echo "$libs" | wc -w) libraries ($(echo $libs))"
