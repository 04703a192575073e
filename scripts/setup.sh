#!/usr/bin/env bash
# Set up a build/test/run host for kedge: a Debian 12 machine, as root.
#
# Installs the system packages the build, the tests and the node agent need,
# checks the toolchains that the machine image must already carry (cargo,
# the kubectl 1.27..1.33 matrix), creates the conformance harness's Python
# venv at .venv, builds kedge in release mode and installs it to
# /usr/local/bin/kedge.
#
# Idempotent: a second run installs nothing new, skips `apt-get update` when
# nothing is missing or the package lists are less than 6 hours old, and only
# rebuilds what cargo considers stale.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

script_start=$(date +%s)
step() { printf '==> [setup %4ds] %s\n' "$(( $(date +%s) - script_start ))" "$*"; }
warn() { printf '!!! WARNING: %s\n' "$*" >&2; }
die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs Debian packages)"
command -v apt-get >/dev/null || die "apt-get not found: this script sets up Debian 12 hosts"

# ---------------------------------------------------------------- packages --
# Build: pkg-config/gcc/make for -sys crates, protoc for tonic/prost builds.
# Node agent and its tests: containerd + runc + CNI plugins, busybox-static
# (rootfs of locally built test images), musl-tools (the static pause
# binary), iptables/nftables/iproute2.
# Datastores: sqlite3 (inspecting the default store), etcd for the HA path.
# Benchmarks: hyperfine. Conformance harness: python3-venv/pip.
# Packaging tests (`make deb`, tests/deb_package.rs): dpkg-dev
# (dpkg-shlibdeps), lintian.
packages=(
  pkg-config gcc make protobuf-compiler python3-venv python3-pip git
  ca-certificates openssl
  containerd runc containernetworking-plugins busybox-static musl-tools
  iptables nftables iproute2
  etcd-server etcd-client sqlite3
  hyperfine
  dpkg-dev lintian
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  step "system packages: all ${#packages[@]} already installed"
else
  step "system packages to install: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  update_stamp=/var/lib/apt/periodic/kedge-update-success-stamp
  apt_update() {
    step "apt-get update"
    apt-get update -qq
    mkdir -p "$(dirname "$update_stamp")"
    touch "$update_stamp"
  }
  updated=0
  if [ -n "$(find "$update_stamp" -mmin -360 2>/dev/null)" ] \
     && compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    step "apt-get update: skipped (lists refreshed less than 6h ago)"
  else
    apt_update
    updated=1
  fi
  # Package installs must not start daemons (containerd, etcd) behind our
  # back: kedge supervises its own containerd and tests start their own etcd.
  # Use a temporary policy-rc.d unless the machine already has one.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  step "apt-get install (${#missing[@]} packages)"
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    # Lists we trusted as fresh may still name files the mirror has replaced.
    [ "$updated" -eq 0 ] || die "apt-get install failed"
    warn "apt-get install failed with the existing package lists; updating them and retrying"
    apt_update
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  step "system packages installed"
fi

# CNI plugins live in /usr/lib/cni on Debian; the conventional path is
# /opt/cni/bin. Link it when nothing is there so either path works.
if [ -d /usr/lib/cni ] && [ ! -e /opt/cni/bin ]; then
  mkdir -p /opt/cni
  ln -s /usr/lib/cni /opt/cni/bin
  step "linked /opt/cni/bin -> /usr/lib/cni"
fi

# ------------------------------------------------------------------ kubectl --
kubectl_dir=/usr/lib/google-cloud-sdk/bin
kubectl_missing=()
for minor in 27 28 29 30 31 32 33; do
  [ -x "$kubectl_dir/kubectl.1.$minor" ] || kubectl_missing+=("kubectl.1.$minor")
done
if [ "${#kubectl_missing[@]}" -eq 0 ]; then
  step "kubectl matrix: 1.27..1.33 present in $kubectl_dir"
else
  warn "missing from $kubectl_dir: ${kubectl_missing[*]}"
  warn "the conformance tests for those kubectl versions will be skipped"
fi

# --------------------------------------------------------------------- Rust --
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
  export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 \
  || die "cargo not found: this machine must come with a Rust toolchain (rustup's cargo on PATH or in ~/.cargo/bin)"
step "rust: $(cargo --version)"

# ------------------------------------------------------------- Python venv --
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || die "$python not found"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
  step "creating .venv with $("$python" --version 2>&1)"
  rm -rf .venv
  "$python" -m venv .venv
fi
step "pip install -r conformance/requirements.txt"
.venv/bin/python -m pip install -q --disable-pip-version-check -r conformance/requirements.txt

# -------------------------------------------------------------------- build --
step "cargo build --release -p kedge"
cargo build --release -p kedge
install -m 0755 target/release/kedge /usr/local/bin/kedge
step "installed /usr/local/bin/kedge"

step "done in $(( $(date +%s) - script_start ))s"
