#!/usr/bin/env bash
# Build the images kedge's node agent and its tests need, with no registry:
#
#   OUTDIR/pause.tar    kedge.local/pause:3.10    images/pause/pause.c, static
#   OUTDIR/busybox.tar  kedge.local/busybox:1.36  Debian's busybox-static
#
# Each tar is an OCI image layout that is also a `docker save` archive
# (see scripts/build-image.py), ready for `ctr -n k8s.io images import` or
# for the agent's images directory. The builds are reproducible: the same
# compiler, musl/glibc and busybox-static package give the same digests.
#
# Usage: scripts/build-test-images.sh OUTDIR
# Prints one line per image: NAME MANIFEST-DIGEST FILE SIZE-BYTES
#
# Needs: python3, and gcc (glibc static: ~680 KiB pause) or better musl-gcc
# from musl-tools (~13 KiB pause), and busybox-static. As root, missing
# Debian packages are installed with apt-get; otherwise the script says
# what to install. Set PAUSE_CC to force a compiler.
set -euo pipefail

die() { printf 'build-test-images: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
outdir=$1
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_image="$repo_root/scripts/build-image.py"
pause_src="$repo_root/images/pause/pause.c"

PAUSE_IMAGE=${PAUSE_IMAGE:-kedge.local/pause:3.10}
BUSYBOX_IMAGE=${BUSYBOX_IMAGE:-kedge.local/busybox:1.36}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}

apt_install() {
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "build-test-images: installing $* with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 \
      || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2; }
  else
    return 1
  fi
}

# busybox-static: the Debian package's binary, not whatever `busybox` is on
# PATH (that may be the dynamically linked `busybox` package).
busybox_bin=/bin/busybox
is_static() { [ -x "$1" ] && ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'INTERP'; }
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q '^install ok installed$'; then
  apt_install busybox-static || die "busybox-static is not installed (apt-get install busybox-static)"
fi
is_static "$busybox_bin" || die "$busybox_bin is not a static binary; is busybox-static installed?"

# Compiler for pause: musl-gcc gives a 13 KiB binary, glibc's ~680 KiB.
if [ -z "${PAUSE_CC:-}" ]; then
  if ! command -v musl-gcc >/dev/null; then
    apt_install musl-tools || true
  fi
  if command -v musl-gcc >/dev/null; then
    PAUSE_CC=musl-gcc
  elif command -v gcc >/dev/null; then
    echo "build-test-images: musl-gcc not found, building pause with glibc (bigger)" >&2
    PAUSE_CC=gcc
  else
    die "no C compiler: apt-get install musl-tools (or gcc)"
  fi
fi

mkdir -p "$outdir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ------------------------------------------------------------------ pause --
pause_root="$work/pause-rootfs"
mkdir -p "$pause_root"
# -ffile-prefix-map/-fno-ident: nothing from this checkout's path or the
# compiler's banner ends up in the binary.
"$PAUSE_CC" -static -Os -s -Wall -Wextra -fno-ident \
  -ffile-prefix-map="$repo_root"=. \
  -o "$pause_root/pause" "$pause_src"
chmod 0755 "$pause_root/pause"
"$pause_root/pause" -v >/dev/null || die "the pause binary does not run"

python3 "$build_image" --rootfs "$pause_root" --name "$PAUSE_IMAGE" \
  --entrypoint /pause --user 65535:65535 --workdir / \
  --output "$outdir/pause.tar" >"$work/pause.digest"

# ---------------------------------------------------------------- busybox --
bb_root="$work/busybox-rootfs"
mkdir -p "$bb_root"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,var/www,var/run,dev,proc,sys}
install -m 0755 "$busybox_bin" "$bb_root/bin/busybox"
chmod 0755 "$bb_root" "$bb_root"/{bin,sbin,usr,usr/bin,usr/sbin,etc,home,var,var/www,dev,proc,sys}
chmod 0700 "$bb_root/root"
install -d -m 1777 "$bb_root/tmp" "$bb_root/var/tmp"
chmod 0755 "$bb_root/var/run"

# Every applet: one symlink in /bin (so /bin/sleep, /bin/nc... always work,
# as in docker.io/library/busybox), and one at the applet's usual place
# (busybox --list-full: /sbin/ifconfig, /usr/bin/env ...) when that differs.
"$busybox_bin" --list-full | sort | while read -r path; do
  applet=${path##*/}
  [ "$applet" = busybox ] && continue
  [ -e "$bb_root/bin/$applet" ] || ln -s busybox "$bb_root/bin/$applet"
  case "$path" in
    bin/*) ;;
    sbin/*)     [ -e "$bb_root/$path" ] || ln -s ../bin/busybox "$bb_root/$path" ;;
    usr/bin/*|usr/sbin/*) [ -e "$bb_root/$path" ] || ln -s ../../bin/busybox "$bb_root/$path" ;;
  esac
done
# Applets the tests rely on must be there.
for a in sh sleep httpd nc wget cat echo env ls ps id hostname true false \
         mkdir printf date head tail dd yes grep sed awk kill test wc touch \
         rm cp mv ln chmod uname nslookup ping timeout; do
  [ -L "$bb_root/bin/$a" ] || die "busybox-static lacks the applet '$a'"
done

cat >"$bb_root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat >"$bb_root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF
# Empty placeholders: the runtime bind-mounts the real ones over them.
: >"$bb_root/etc/hosts"
: >"$bb_root/etc/resolv.conf"
: >"$bb_root/etc/hostname"
chmod 0644 "$bb_root"/etc/{passwd,group,hosts,resolv.conf,hostname}

# Like docker.io/library/busybox: Cmd ["sh"], no Entrypoint, so a pod's
# `command` and `args` behave as they do with the upstream image. The tag
# says 1.36; the label says which Debian busybox-static is really inside.
bb_version=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)
python3 "$build_image" --rootfs "$bb_root" --name "$BUSYBOX_IMAGE" \
  --cmd sh --workdir / \
  --label "org.opencontainers.image.version=debian-busybox-static-$bb_version" \
  --output "$outdir/busybox.tar" >"$work/busybox.digest"

for img in pause busybox; do
  case $img in pause) name=$PAUSE_IMAGE ;; busybox) name=$BUSYBOX_IMAGE ;; esac
  printf '%s %s %s %s\n' "$name" "$(cat "$work/$img.digest")" "$outdir/$img.tar" \
    "$(stat -c %s "$outdir/$img.tar")"
done
