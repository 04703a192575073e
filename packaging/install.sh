#!/bin/sh
# kedge installer, in the manner of K3s's install.sh, for air-gapped hosts:
# it installs a local binary or .deb (no network needed), writes the systemd
# unit and its environment file, installs kedge-killall.sh and
# kedge-uninstall.sh, checks the host with `kedge check-config`, and
# enables and starts the service. Running it again is safe.
#
# From a .deb (INSTALL_KEDGE_DEB, or one kedge_*.deb next to this script),
# the package brings /usr/bin/kedge, kedge-killall.sh and the units;
# this script installs it with apt-get (or dpkg), then writes the
# environment file, a drop-in for INSTALL_KEDGE_EXEC's flags and
# kedge-uninstall.sh (which purges the package), and starts the service.
#
# Environment:
#   INSTALL_KEDGE_DEB            a kedge .deb to install (default: the one
#                                kedge_*.deb next to this script, if any)
#   INSTALL_KEDGE_BIN            the kedge binary to install (default: ./kedge
#                                next to this script, else the one already installed)
#   INSTALL_KEDGE_DOWNLOAD_URL   optional: fetch the binary from here when no
#                                local one is given (never required)
#   INSTALL_KEDGE_DOWNLOAD_SHA256  optional: expected SHA-256 of the download
#   INSTALL_KEDGE_BIN_DIR        where kedge and the scripts go (/usr/local/bin;
#                                from a .deb, kedge is in /usr/bin and only
#                                kedge-uninstall.sh and the kubectl link go here)
#   INSTALL_KEDGE_SYSTEMD_DIR    where the unit goes (/etc/systemd/system)
#   INSTALL_KEDGE_DATA_DIR       kedge's data dir, checked and removed on uninstall
#                                (/var/lib/kedge)
#   INSTALL_KEDGE_EXEC           command and flags: "server ..." or "agent ...";
#                                flags alone are given to the default command
#                                (server, or agent when KEDGE_URL is set)
#   INSTALL_KEDGE_SKIP_START     true: do not start the service
#   INSTALL_KEDGE_SKIP_ENABLE    true: neither enable nor start it
#   INSTALL_KEDGE_SKIP_CHECK     true: install even if `kedge check-config` fails
#   INSTALL_KEDGE_SYMLINK        skip: never link kubectl (default: link it
#                                when absent and kedge has a built-in kubectl)
#   INSTALL_KEDGE_ROOT           testing only: write every file under this
#                                prefix (a .deb goes in with dpkg --root), never
#                                call systemctl
#   KEDGE_TOKEN, KEDGE_URL       written to the unit's environment file; with
#                                KEDGE_URL the agent unit (kedge-agent) is installed

set -eu

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() {
    echo "[ERROR] $*" >&2
    exit 1
}

ROOT=${INSTALL_KEDGE_ROOT:-}
BIN_DIR=${INSTALL_KEDGE_BIN_DIR:-/usr/local/bin}
SYSTEMD_DIR=${INSTALL_KEDGE_SYSTEMD_DIR:-/etc/systemd/system}
DATA_DIR=${INSTALL_KEDGE_DATA_DIR:-/var/lib/kedge}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
# The .deb to install, when installing from one (find_binary sets it).
DEB=""

setup_command() {
    if [ -n "${KEDGE_URL:-}" ]; then
        default_cmd=agent
    else
        default_cmd=server
    fi
    EXEC=${INSTALL_KEDGE_EXEC:-$default_cmd}
    case "$EXEC" in
        -*) EXEC="$default_cmd $EXEC" ;;
    esac
    CMD=${EXEC%% *}
    case "$CMD" in
        server) SERVICE=kedge ;;
        agent) SERVICE=kedge-agent ;;
        *) fatal "INSTALL_KEDGE_EXEC must start with server or agent, not '$CMD'" ;;
    esac
    if [ "$CMD" = agent ]; then
        [ -n "${KEDGE_URL:-}" ] || fatal "an agent needs KEDGE_URL (the server's https://host:6443)"
        [ -n "${KEDGE_TOKEN:-}" ] || fatal "an agent needs KEDGE_TOKEN (the server's token)"
    fi
    if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
        fatal "run as root (or with sudo)"
    fi
}

# Sets DEB to the .deb to install, or SRC to the binary to install, or
# neither when the installed binary stays.
find_binary() {
    SRC=""
    if [ -n "${INSTALL_KEDGE_DEB:-}" ]; then
        [ -f "$INSTALL_KEDGE_DEB" ] || fatal "INSTALL_KEDGE_DEB=$INSTALL_KEDGE_DEB is not a file"
        use_deb "$INSTALL_KEDGE_DEB"
        return 0
    fi
    if [ -z "${INSTALL_KEDGE_BIN:-}" ]; then
        debs=""
        n=0
        for f in "$SCRIPT_DIR"/kedge_*.deb; do
            [ -f "$f" ] || continue
            debs="$debs $f"
            n=$((n + 1))
        done
        if [ "$n" -gt 1 ]; then
            fatal "several kedge .debs next to this script ($debs ): choose one with INSTALL_KEDGE_DEB=path"
        elif [ "$n" -eq 1 ]; then
            use_deb "${debs# }"
            return 0
        fi
    fi
    DEST="$ROOT$BIN_DIR/kedge"
    if [ -n "${INSTALL_KEDGE_BIN:-}" ]; then
        [ -f "$INSTALL_KEDGE_BIN" ] || fatal "INSTALL_KEDGE_BIN=$INSTALL_KEDGE_BIN is not a file"
        SRC=$INSTALL_KEDGE_BIN
    elif [ -f "$SCRIPT_DIR/kedge" ]; then
        SRC="$SCRIPT_DIR/kedge"
    elif [ -n "${INSTALL_KEDGE_DOWNLOAD_URL:-}" ]; then
        download
    elif [ -x "$DEST" ]; then
        info "keeping the installed $BIN_DIR/kedge"
    else
        fatal "no kedge binary: set INSTALL_KEDGE_BIN=/path/to/kedge, put kedge next to this script, or set INSTALL_KEDGE_DOWNLOAD_URL"
    fi
}

# Installing from a .deb: kedge lives in /usr/bin, the package's units and
# kedge-killall.sh are used; BIN_DIR keeps the uninstall script and the
# kubectl link.
use_deb() {
    DEB=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    command -v dpkg >/dev/null 2>&1 || fatal "installing a .deb needs dpkg: on this system install the binary (INSTALL_KEDGE_BIN) instead"
    pkg=$(dpkg-deb --field "$DEB" Package 2>/dev/null) || fatal "$DEB is not a Debian package"
    [ "$pkg" = kedge ] || fatal "$DEB is the package '$pkg', not kedge"
    DEST="$ROOT/usr/bin/kedge"
}

download() {
    TMP_DOWNLOAD=$(mktemp)
    trap 'rm -f "$TMP_DOWNLOAD"' EXIT
    info "downloading $INSTALL_KEDGE_DOWNLOAD_URL"
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL -o "$TMP_DOWNLOAD" "$INSTALL_KEDGE_DOWNLOAD_URL" || fatal "download failed"
    elif command -v wget >/dev/null 2>&1; then
        wget -qO "$TMP_DOWNLOAD" "$INSTALL_KEDGE_DOWNLOAD_URL" || fatal "download failed"
    else
        fatal "neither curl nor wget to download with; set INSTALL_KEDGE_BIN instead"
    fi
    if [ -n "${INSTALL_KEDGE_DOWNLOAD_SHA256:-}" ]; then
        got=$(sha256sum "$TMP_DOWNLOAD" | cut -d' ' -f1)
        [ "$got" = "$INSTALL_KEDGE_DOWNLOAD_SHA256" ] || fatal "download's SHA-256 is $got, expected $INSTALL_KEDGE_DOWNLOAD_SHA256"
    fi
    SRC=$TMP_DOWNLOAD
}

# Before the package goes in: the unit, binary and kill-all script an
# earlier install from a binary wrote, which the package's replace (a unit
# in /etc/systemd/system would hide the package's).
remove_binary_install() {
    for unit in kedge kedge-agent; do
        old="$ROOT$SYSTEMD_DIR/$unit.service"
        if [ -f "$old" ] && head -n1 "$old" | grep -q "^# Written by kedge's install.sh"; then
            info "removing $SYSTEMD_DIR/$unit.service of an install without the .deb: the package's unit replaces it"
            if [ -z "$ROOT" ]; then
                systemctl disable "$unit" >/dev/null 2>&1 || true
            fi
            rm -f "$old"
            if [ "$BIN_DIR" != /usr/bin ]; then
                rm -f "$ROOT$BIN_DIR/kedge" "$ROOT$BIN_DIR/kedge-killall.sh"
            fi
        fi
    done
}

install_deb() {
    remove_binary_install
    info "installing $DEB"
    if [ -n "$ROOT" ]; then
        # Testing: into the prefix, maintainer scripts run without chroot
        # and see DPKG_ROOT (they never call systemctl then).
        mkdir -p "$ROOT/var/lib/dpkg/info" "$ROOT/var/lib/dpkg/updates"
        [ -f "$ROOT/var/lib/dpkg/status" ] || : >"$ROOT/var/lib/dpkg/status"
        out=$(dpkg --root="$ROOT" --force-script-chrootless --force-depends --force-not-root -i "$DEB" 2>&1) ||
            fatal "dpkg could not install $DEB under $ROOT: $out"
        return 0
    fi
    # The package's postinst must not start a server before the
    # environment file and flags are written: start_service starts it.
    if command -v apt-get >/dev/null 2>&1; then
        KEDGE_SKIP_START=true DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "$DEB" >/dev/null ||
            fatal "apt-get could not install $DEB: it needs containerd, runc, containernetworking-plugins and iptables from your package mirror, or their .debs installed first"
    else
        KEDGE_SKIP_START=true dpkg -i "$DEB" >/dev/null ||
            fatal "dpkg could not install $DEB: install containerd, runc, containernetworking-plugins and iptables first"
    fi
}

install_binary() {
    if [ -n "$DEB" ]; then
        install_deb
    fi
    mkdir -p "$ROOT$BIN_DIR"
    if [ -z "$DEB" ] && [ -n "$SRC" ]; then
        if [ -f "$DEST" ] && cmp -s "$SRC" "$DEST"; then
            info "$BIN_DIR/kedge is up to date"
        else
            info "installing kedge to $BIN_DIR/kedge"
            # A rename, so that a running kedge keeps its old file.
            cp "$SRC" "$DEST.tmp.$$"
            chmod 0755 "$DEST.tmp.$$"
            mv -f "$DEST.tmp.$$" "$DEST"
        fi
    fi
    "$DEST" --version >/dev/null 2>&1 || fatal "${DEST#"$ROOT"} does not run on this host (wrong architecture?)"
    info "$("$DEST" --version)"
}

check_host() {
    info "checking the host (kedge check-config)"
    rc=0
    out=$("$DEST" check-config --data-dir "$DATA_DIR") || rc=$?
    echo "$out" | sed -n -e 's/^MISSING *\(.*\)/[ERROR] \1/p' -e 's/^warn *\(.*\)/[WARN]  \1/p' >&2
    if [ "$rc" -ne 0 ]; then
        if [ "${INSTALL_KEDGE_SKIP_CHECK:-}" = true ]; then
            warn "the host lacks something kedge needs (see above); installing anyway (INSTALL_KEDGE_SKIP_CHECK=true)"
        else
            fatal "the host lacks something kedge needs (see above); fix it, or set INSTALL_KEDGE_SKIP_CHECK=true"
        fi
    fi
}

create_symlinks() {
    [ "${INSTALL_KEDGE_SYMLINK:-}" = skip ] && return 0
    link="$ROOT$BIN_DIR/kubectl"
    if [ -e "$link" ] || [ -L "$link" ] || { [ -z "$ROOT" ] && command -v kubectl >/dev/null 2>&1; }; then
        info "kubectl is already installed; not linking it"
    elif "$DEST" kubectl --help >/dev/null 2>&1; then
        info "linking $BIN_DIR/kubectl to kedge"
        if [ -n "$DEB" ]; then
            ln -s /usr/bin/kedge "$link"
        else
            ln -s kedge "$link"
        fi
    else
        info "no kubectl here and kedge has no built-in one: install kubectl and use /etc/kedge/kedge.yaml"
    fi
}

write_env_file() {
    env_file="$ROOT$SYSTEMD_DIR/$SERVICE.service.env"
    mkdir -p "$ROOT$SYSTEMD_DIR"
    umask 077
    : >"$env_file.tmp"
    for var in KEDGE_TOKEN KEDGE_URL; do
        eval "val=\${$var:-}"
        if [ -n "$val" ]; then
            printf '%s="%s"\n' "$var" "$val" >>"$env_file.tmp"
        fi
    done
    chmod 0600 "$env_file.tmp"
    mv -f "$env_file.tmp" "$env_file"
    umask 022
    info "environment file $SYSTEMD_DIR/$SERVICE.service.env"
}

# From a .deb: the packaged unit runs `kedge server` (or `kedge agent`);
# other flags go into a drop-in that replaces its ExecStart.
write_dropin() {
    dropin_dir="$ROOT$SYSTEMD_DIR/$SERVICE.service.d"
    dropin="$dropin_dir/10-kedge-install.conf"
    if [ "$EXEC" = "$CMD" ]; then
        rm -f "$dropin"
        rmdir "$dropin_dir" 2>/dev/null || true
        return 0
    fi
    mkdir -p "$dropin_dir"
    cat >"$dropin.tmp" <<EOF
# Written by kedge's install.sh: INSTALL_KEDGE_EXEC for the packaged unit.
[Service]
ExecStart=
ExecStart=/usr/bin/kedge $EXEC
EOF
    mv -f "$dropin.tmp" "$dropin"
    info "systemd drop-in $SYSTEMD_DIR/$SERVICE.service.d/10-kedge-install.conf"
}

write_unit() {
    if [ -n "$DEB" ]; then
        write_dropin
        return 0
    fi
    unit="$ROOT$SYSTEMD_DIR/$SERVICE.service"
    if [ "$CMD" = server ]; then
        what="server: control plane and node agent"
        ready="once the API serves and its node is Ready"
    else
        what="agent: a node joining a kedge server"
        ready="once its node is Ready"
    fi
    cat >"$unit.tmp" <<EOF
# Written by kedge's install.sh.
[Unit]
Description=kedge: Kubernetes for edge gateways ($what)
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
# kedge sends READY=1 $ready.
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-$SYSTEMD_DIR/$SERVICE.service.env
# Stop only kedge itself: containerd's shims and the pods survive a restart.
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$BIN_DIR/kedge $EXEC
EOF
    mv -f "$unit.tmp" "$unit"
    info "systemd unit $SYSTEMD_DIR/$SERVICE.service"
}

write_killall() {
    # The package ships /usr/bin/kedge-killall.sh.
    [ -z "$DEB" ] || return 0
    killall="$ROOT$BIN_DIR/kedge-killall.sh"
    cat >"$killall.tmp" <<EOF
#!/bin/sh
# Stops kedge, its pods and its containerd; unmounts what they mounted.
# Written by kedge's install.sh.
set -u
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
DATA_DIR='$DATA_DIR'
EOF
    # The body is also the .deb's /usr/bin/kedge-killall.sh (scripts/build-deb
    # takes it from between these KILLALL_BODY lines).
    cat >>"$killall.tmp" <<'KILLALL_BODY'
for unit in kedge kedge-agent; do
    systemctl stop "$unit" 2>/dev/null || true
done

# Pids whose command line mentions $1.
pids_with() {
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        case "$cmd" in
            *"$1"*) echo "${p#/proc/}" ;;
        esac
    done
}

# A pid and all its descendants.
tree() {
    for pid in "$@"; do
        echo "$pid"
        # shellcheck disable=SC2013 # the file is a list of pids, words on purpose
        for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
            tree "$child"
        done
    done
}

# The pods: containerd shims with kedge's containerd address, and their
# containers. TERM first, then KILL what is left after 10 seconds.
shims=$(pids_with "$DATA_DIR/agent/containerd/containerd.sock" | while read -r pid; do
    case "$(cat /proc/"$pid"/comm 2>/dev/null)" in containerd-shim*) echo "$pid" ;; esac
done)
if [ -n "$shims" ]; then
    # shellcheck disable=SC2086 # lists of pids, split on purpose
    pods=$(tree $shims)
    # shellcheck disable=SC2086
    kill -TERM $pods 2>/dev/null || true
    i=0
    while [ $i -lt 10 ]; do
        alive=false
        for pid in $pods; do
            kill -0 "$pid" 2>/dev/null && alive=true
        done
        [ "$alive" = true ] || break
        sleep 1
        i=$((i + 1))
    done
    # shellcheck disable=SC2086
    kill -KILL $pods 2>/dev/null || true
fi
for pid in $(pids_with "$DATA_DIR/agent/etc/containerd"); do
    kill -TERM "$pid" 2>/dev/null || true
done
sleep 1
for pid in $(pids_with "$DATA_DIR/agent/etc/containerd"); do
    kill -KILL "$pid" 2>/dev/null || true
done

# Unmount, deepest first.
unmount_under() {
    while read -r _ path _; do
        case "$path" in "$1"*) echo "$path" ;; esac
    done </proc/self/mounts | sort -r | while read -r path; do
        umount -f "$path" 2>/dev/null || umount -l "$path" 2>/dev/null || true
    done
}
unmount_under "$DATA_DIR"
unmount_under /var/lib/kubelet/pods
unmount_under /run/netns/cni-
unmount_under /var/run/netns/cni-
rm -f /run/netns/cni-* 2>/dev/null || true

# The pod network.
ip link delete cni0 2>/dev/null || true
for fw in iptables ip6tables; do
    if command -v "$fw-save" >/dev/null 2>&1; then
        "$fw-save" | grep -v -e CNI- -e KEDGE- | "$fw-restore" || true
    fi
done
KILLALL_BODY
    chmod 0755 "$killall.tmp"
    mv -f "$killall.tmp" "$killall"
    info "kill-all script $BIN_DIR/kedge-killall.sh"
}

# From a .deb, uninstalling is purging the package (its prerm stops kedge
# and its pods, its postrm deletes the data) plus what this script added.
write_uninstall_deb() {
    uninstall="$ROOT$BIN_DIR/kedge-uninstall.sh"
    cat >"$uninstall.tmp" <<EOF
#!/bin/sh
# Removes kedge installed from its .deb: purges the package (which stops
# kedge and its pods and deletes its data) and what install.sh added.
# Written by kedge's install.sh.
set -u
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
BIN_DIR='$BIN_DIR'
SYSTEMD_DIR='$SYSTEMD_DIR'
EOF
    cat >>"$uninstall.tmp" <<'EOF'
if command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q kedge
else
    dpkg --purge kedge
fi
for unit in kedge kedge-agent; do
    rm -f "$SYSTEMD_DIR/$unit.service.env" "$SYSTEMD_DIR/$unit.service.d/10-kedge-install.conf"
    rmdir "$SYSTEMD_DIR/$unit.service.d" 2>/dev/null || true
done
systemctl daemon-reload 2>/dev/null || true
if [ -L "$BIN_DIR/kubectl" ] && [ "$(readlink "$BIN_DIR/kubectl")" = /usr/bin/kedge ]; then
    rm -f "$BIN_DIR/kubectl"
fi
rm -f "$0"
echo "kedge is uninstalled"
EOF
    chmod 0755 "$uninstall.tmp"
    mv -f "$uninstall.tmp" "$uninstall"
    info "uninstall script $BIN_DIR/kedge-uninstall.sh"
}

write_uninstall() {
    if [ -n "$DEB" ]; then
        write_uninstall_deb
        return 0
    fi
    uninstall="$ROOT$BIN_DIR/kedge-uninstall.sh"
    cat >"$uninstall.tmp" <<EOF
#!/bin/sh
# Removes kedge: its service, pods, mounts, files and data.
# Written by kedge's install.sh.
set -u
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
BIN_DIR='$BIN_DIR'
SYSTEMD_DIR='$SYSTEMD_DIR'
DATA_DIR='$DATA_DIR'
EOF
    cat >>"$uninstall.tmp" <<'EOF'
"$BIN_DIR/kedge-killall.sh"
for unit in kedge kedge-agent; do
    systemctl disable "$unit" 2>/dev/null || true
    rm -f "$SYSTEMD_DIR/$unit.service" "$SYSTEMD_DIR/$unit.service.env"
done
systemctl daemon-reload 2>/dev/null || true
systemctl reset-failed kedge kedge-agent 2>/dev/null || true
if [ -L "$BIN_DIR/kubectl" ] && [ "$(readlink "$BIN_DIR/kubectl")" = kedge ]; then
    rm -f "$BIN_DIR/kubectl"
fi
rm -rf /etc/kedge "$DATA_DIR" /var/lib/kubelet /var/log/pods /var/lib/cni
rm -f "$BIN_DIR/kedge" "$BIN_DIR/kedge-killall.sh"
rm -f "$0"
echo "kedge is uninstalled"
EOF
    chmod 0755 "$uninstall.tmp"
    mv -f "$uninstall.tmp" "$uninstall"
    info "uninstall script $BIN_DIR/kedge-uninstall.sh"
}

start_service() {
    mkdir -p "$ROOT/etc/kedge"
    if [ -n "$ROOT" ]; then
        info "INSTALL_KEDGE_ROOT is set: not calling systemctl"
        return 0
    fi
    [ "${INSTALL_KEDGE_SKIP_ENABLE:-}" = true ] && return 0
    systemctl daemon-reload
    if [ -n "$DEB" ] && [ "$SERVICE" = kedge-agent ]; then
        # The package enables the server on its first install; an agent
        # host runs the agent unit alone.
        systemctl disable --now kedge.service >/dev/null 2>&1 || true
    fi
    info "enabling $SERVICE"
    systemctl enable "$SERVICE" >/dev/null
    [ "${INSTALL_KEDGE_SKIP_START:-}" = true ] && return 0
    info "starting $SERVICE (returns when it is ready)"
    systemctl restart "$SERVICE"
}

setup_command
find_binary
install_binary
check_host
create_symlinks
write_env_file
write_unit
write_killall
write_uninstall
start_service
info "done"
