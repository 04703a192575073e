"""The cluster under test, shared by every conformance test in a session.

Two modes:

* ``KUBECONFIG`` set and ``KEDGE_BIN`` unset: test the cluster that the
  kubeconfig names (any Kubernetes cluster). kedge-specific expectations
  (``+kedge`` in the version, the 10.43.0.0/16 service range) apply only when
  ``KEDGE_CONFORMANCE_EXPECT_KEDGE=1``.
* otherwise: start ``$KEDGE_BIN`` (default ``target/release/kedge`` if it
  exists, else ``target/debug/kedge``) on a free loopback port with a fresh
  data directory, wait for ``/readyz``, and stop it when the session ends.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import yaml

from kubeutil import Kubectl, expect_kedge, testing_external_cluster

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = float(os.environ.get("KEDGE_STARTUP_TIMEOUT", "60"))
STOP_TIMEOUT_S = 15.0
# The kubectl minors every kubectl test runs with (see the `kubectl` fixture).
KUBECTL_VERSIONS = os.environ.get("KEDGE_CONFORMANCE_KUBECTL", "1.27 1.33").split()

# The log of the server this session started, for the failure summary.
_server_log: Optional[Path] = None


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    """Path of a kubeconfig file for an admin of the cluster."""
    server: str
    """The API server URL from the kubeconfig's current context."""
    is_kedge: bool
    """Whether kedge-specific expectations apply."""
    workdir: Path
    """Scratch space for this session (kubectl caches, manifests)."""
    suffix: str
    """Random, unique to this session: makes cluster-scoped names unique."""
    log_path: Optional[Path] = None
    """The started server's combined stdout/stderr, if this session started it."""


def _current_cluster_entry(kubeconfig: dict) -> dict:
    contexts = {c["name"]: c["context"] for c in kubeconfig.get("contexts") or []}
    clusters = {c["name"]: c["cluster"] for c in kubeconfig.get("clusters") or []}
    current = kubeconfig.get("current-context") or next(iter(contexts), None)
    if current is None or current not in contexts:
        raise ValueError(f"kubeconfig has no usable current-context ({current!r})")
    return clusters[contexts[current]["cluster"]]


def _ca_pem(entry: dict, kubeconfig_path: Path) -> Optional[str]:
    if entry.get("certificate-authority-data"):
        return base64.b64decode(entry["certificate-authority-data"]).decode()
    if entry.get("certificate-authority"):
        ca = Path(entry["certificate-authority"])
        if not ca.is_absolute():
            ca = kubeconfig_path.parent / ca
        return ca.read_text()
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kedge_binary() -> Path:
    explicit = os.environ.get("KEDGE_BIN")
    if explicit:
        path = Path(explicit)
        if not path.is_absolute():
            path = Path.cwd() / path
    else:
        release = REPO_ROOT / "target" / "release" / "kedge"
        path = release if release.exists() else REPO_ROOT / "target" / "debug" / "kedge"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(
            f"no kedge binary at {path}: build it (`make build`), set KEDGE_BIN, "
            "or set KUBECONFIG (without KEDGE_BIN) to test another cluster",
            returncode=2,
        )
    return path


def _log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _readyz(port: int, ca_pem: str) -> bool:
    try:
        ctx = ssl.create_default_context(cadata=ca_pem)
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=2
        ) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, ssl.SSLError, OSError):
        # Not listening yet, not ready yet (HTTPError is a URLError), or a
        # certificate not yet in place.
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"kedge (pid {proc.pid}) ignored SIGTERM for {STOP_TIMEOUT_S}s; killing it",
              file=sys.stderr)
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _start_kedge(workdir: Path, suffix: str):
    global _server_log
    binary = _kedge_binary()
    port = _free_port()
    data_dir = workdir / "data"
    kubeconfig = workdir / "kubeconfig.yaml"
    log_path = workdir / "kedge.log"
    cmd = [
        str(binary), "server",
        "--data-dir", str(data_dir),
        "--https-listen-port", str(port),
        "--bind-address", "127.0.0.1",
        "--write-kubeconfig", str(kubeconfig),
        "--disable-agent",
        "--token", secrets.token_hex(16),
    ]
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        # Its own session: a terminal's Ctrl-C reaches pytest, which stops it.
        start_new_session=True,
    )
    log.close()
    _server_log = log_path

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    server_url = None
    while True:
        if proc.poll() is not None:
            pytest.exit(
                f"kedge exited with status {proc.returncode} before it was ready.\n"
                f"command: {' '.join(cmd)}\nlog {log_path}:\n{_log_tail(log_path)}",
                returncode=3,
            )
        if kubeconfig.exists():
            try:
                parsed = yaml.safe_load(kubeconfig.read_text())
                entry = _current_cluster_entry(parsed)
                ca = _ca_pem(entry, kubeconfig)
                server_url = entry["server"]
            except (yaml.YAMLError, KeyError, TypeError, ValueError, OSError):
                ca = None  # still being written
            if ca and _readyz(port, ca):
                break
        if time.monotonic() > deadline:
            _stop(proc)
            pytest.exit(
                f"kedge was not ready (GET https://127.0.0.1:{port}/readyz -> 200, "
                f"kubeconfig at {kubeconfig}) within {STARTUP_TIMEOUT_S:.0f}s.\n"
                f"command: {' '.join(cmd)}\nlog {log_path}:\n{_log_tail(log_path)}",
                returncode=3,
            )
        time.sleep(0.2)

    cluster = Cluster(
        kubeconfig=str(kubeconfig),
        server=server_url,
        is_kedge=True,
        workdir=workdir,
        suffix=suffix,
        log_path=log_path,
    )
    return cluster, proc


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    workdir = tmp_path_factory.mktemp("cluster")
    suffix = secrets.token_hex(3)
    external = os.environ.get("KUBECONFIG")
    if testing_external_cluster():
        if os.pathsep in external:
            pytest.exit("KUBECONFIG must name one file for the conformance tests", returncode=2)
        path = Path(external).expanduser()
        entry = _current_cluster_entry(yaml.safe_load(path.read_text()))
        yield Cluster(
            kubeconfig=str(path),
            server=entry["server"],
            is_kedge=expect_kedge(),
            workdir=workdir,
            suffix=suffix,
        )
        return

    cluster, proc = _start_kedge(workdir, suffix)
    try:
        yield cluster
    finally:
        _stop(proc)
        if proc.returncode not in (0, -15, 143):
            print(f"\nkedge exited with status {proc.returncode}; log: {cluster.log_path}",
                  file=sys.stderr)


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl(request, cluster) -> Kubectl:
    """One stock kubectl binary; each kubectl test module runs once per version."""
    k = Kubectl(request.param, cluster.kubeconfig,
                cluster.workdir / f"kubectl-cache-{request.param}")
    if not k.available():
        pytest.skip(f"!!! {k.binary} is missing: kubectl {request.param} NOT TESTED "
                    "(scripts/setup.sh checks for the kubectl matrix)")
    return k


def pytest_collection_modifyitems(config, items):
    """Deselect, or mark as strict xfails, the vendored upstream tests that a
    test module lists in UPSTREAM_DESELECT / UPSTREAM_XFAIL ("Class.method").
    An xfail whose reason starts with "kedge:" applies only where kedge is
    under test; "upstream:" ones (broken upstream tests) everywhere."""
    kept, deselected = [], []
    for item in items:
        module = getattr(item, "module", None)
        cls = getattr(item, "cls", None)
        key = f"{cls.__name__}.{item.name}" if cls is not None else item.name
        if key in getattr(module, "UPSTREAM_DESELECT", {}):
            deselected.append(item)
            continue
        reason = getattr(module, "UPSTREAM_XFAIL", {}).get(key)
        if reason and (not reason.startswith("kedge:") or expect_kedge()):
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_report_header(config):
    if os.environ.get("KUBECONFIG") and not os.environ.get("KEDGE_BIN"):
        return f"cluster under test: KUBECONFIG={os.environ['KUBECONFIG']}"
    return "cluster under test: a kedge server started by conftest.py"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _server_log is None:
        return
    terminalreporter.write_line(f"kedge server log: {_server_log}")
    if exitstatus != 0:
        terminalreporter.write_sep("-", f"last lines of {_server_log}")
        terminalreporter.write_line(_log_tail(_server_log, 40))
