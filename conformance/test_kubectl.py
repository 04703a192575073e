"""Stock kubectl, oldest and newest supported minor, against the cluster.

kubectl always gets --kubeconfig, and --validate=false on create/replace
(the server does not publish OpenAPI yet).
"""

from __future__ import annotations

import copy
import ipaddress
import queue
import re
import threading
import time

import pytest
import yaml

from kubeutil import parse_table, write_yaml
from manifests import KIND_CASES, Ctx, configmap, deployment, pod

# The `kubectl` fixture (one per kubectl version) is in conftest.py.
KEDGE_SERVICE_CIDR = ipaddress.ip_network("10.43.0.0/16")


@pytest.fixture(scope="module")
def ns(kubectl, cluster):
    name = f"conf-kubectl-{kubectl.tag}-{cluster.suffix}"
    # From YAML (a JSON request body); `kubectl create namespace`, which newer
    # kubectl sends as protobuf, has a test of its own.
    kubectl.create_from(cluster.workdir / f"{name}.yaml",
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found",
                check=False)


@pytest.fixture
def ctx(kubectl, ns, cluster) -> Ctx:
    return Ctx(ns=ns, tag=kubectl.tag, suffix=cluster.suffix)


# ------------------------------------------------------------- discovery --

def test_version(kubectl, cluster):
    v = kubectl.json("version")
    assert v["clientVersion"]["gitVersion"].startswith(f"v{kubectl.version}.")
    server = v["serverVersion"]
    assert server["major"] == "1"
    assert re.match(r"^v1\.\d+\.\d+", server["gitVersion"]), server
    assert re.match(r"^\w+/\w+$", server["platform"]), server
    if cluster.is_kedge:
        assert server["gitVersion"].startswith("v1.33."), server
        assert "+kedge" in server["gitVersion"], server
        assert server["minor"] == "33", server


def test_api_resources(kubectl):
    header, rows = parse_table(kubectl.run("api-resources").stdout)
    assert header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    served = {(r["NAME"], r["APIVERSION"]): r for r in rows}
    missing = []
    for case in KIND_CASES:
        row = served.get((case.plural, case.api_version))
        if row is None:
            missing.append(f"{case.plural} ({case.api_version})")
            continue
        assert row["KIND"] == case.kind, row
        assert row["NAMESPACED"] == str(case.namespaced).lower(), row
        assert row["SHORTNAMES"] == case.shortnames, row
    assert not missing, f"api-resources lacks: {', '.join(missing)}"
    # The examples from the issue, spelled out.
    assert served[("pods", "v1")]["SHORTNAMES"] == "po"
    assert served[("pods", "v1")]["NAMESPACED"] == "true"
    assert served[("deployments", "apps/v1")]["NAMESPACED"] == "true"
    assert served[("nodes", "v1")]["NAMESPACED"] == "false"


def test_api_versions(kubectl):
    versions = set(kubectl.run("api-versions").stdout.split())
    expected = {"v1", "apps/v1", "batch/v1", "coordination.k8s.io/v1",
                "apiextensions.k8s.io/v1"} | {c.api_version for c in KIND_CASES}
    assert expected <= versions, f"missing: {sorted(expected - versions)}"


def test_default_namespaces(kubectl):
    names = kubectl.names("get", "namespaces")
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    header, rows = parse_table(kubectl.run("get", "namespaces", "default").stdout)
    assert header == ["NAME", "STATUS", "AGE"]
    assert rows[0]["NAME"] == "default" and rows[0]["STATUS"] == "Active"


def test_kubernetes_service(kubectl, cluster):
    svc = kubectl.json("get", "service", "kubernetes", "-n", "default")
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    ipaddress.ip_address(spec["clusterIP"])
    assert [(p["name"], p["port"], p["protocol"]) for p in spec["ports"]] == \
        [("https", 443, "TCP")]
    if cluster.is_kedge:
        assert spec["clusterIP"] == "10.43.0.1"
    header, rows = parse_table(
        kubectl.run("get", "svc", "kubernetes", "-n", "default").stdout)
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows[0]["TYPE"] == "ClusterIP"
    assert rows[0]["CLUSTER-IP"] == spec["clusterIP"]
    assert rows[0]["PORT(S)"] == "443/TCP"


# ------------------------------------------------------ every kind: CRUD --

@pytest.mark.parametrize("case", KIND_CASES, ids=lambda c: c.id)
def test_create_get_list_delete(kubectl, ctx, case, tmp_path):
    name = case.name(ctx)
    scope = ["-n", ctx.ns] if case.namespaced else []
    try:
        out = kubectl.create_from(tmp_path / "obj.yaml", case.manifest(ctx)).stdout
        assert "created" in out, out

        obj = kubectl.json("get", case.resource, name, *scope)
        assert obj["apiVersion"] == case.api_version
        assert obj["kind"] == case.kind
        meta = obj["metadata"]
        assert meta["name"] == name
        assert meta.get("uid") and meta.get("resourceVersion") and meta.get("creationTimestamp"), meta
        if case.namespaced:
            assert meta["namespace"] == ctx.ns
        else:
            assert not meta.get("namespace"), meta

        as_yaml = yaml.safe_load(kubectl.run("get", case.resource, name, *scope, "-o", "yaml").stdout)
        assert as_yaml["kind"] == case.kind
        assert as_yaml["metadata"]["uid"] == meta["uid"]

        wide = kubectl.run("get", case.resource, name, *scope, "-o", "wide").stdout
        _, rows = parse_table(wide)
        assert len(rows) == 1, wide
        assert name in wide, wide

        listed = kubectl.json("get", case.resource, *scope)
        assert listed["kind"] == "List", listed.get("kind")
        assert name in [i["metadata"]["name"] for i in listed["items"]]

        out = kubectl.run("delete", case.resource, name, *scope, "--wait=true",
                          "--timeout=60s", timeout=90).stdout
        assert "deleted" in out, out
        gone = kubectl.run("get", case.resource, name, *scope, check=False)
        assert gone.rc != 0, gone.describe()
        assert "NotFound" in gone.stderr, gone.describe()
    finally:
        kubectl.run("delete", case.resource, name, *scope, "--ignore-not-found",
                    "--wait=false", check=False)


# ---------------------------------------------------------------- tables --

def test_pod_table_columns(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "pod.yaml", pod(ns, "table-pod"))
    header, rows = parse_table(kubectl.run("get", "pods", "table-pod", "-n", ns).stdout)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows[0]["NAME"] == "table-pod"
    assert rows[0]["READY"] == "0/1"
    assert rows[0]["STATUS"] == "Pending"
    assert rows[0]["RESTARTS"] == "0"
    header, rows = parse_table(
        kubectl.run("get", "pods", "table-pod", "-n", ns, "-o", "wide").stdout)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE",
                      "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    assert rows[0]["NODE"] == "<none>"
    assert rows[0]["READINESS GATES"] == "<none>"


def test_deployment_table_columns(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "deploy.yaml", deployment(ns, "table-deploy"))
    header, rows = parse_table(
        kubectl.run("get", "deployments", "table-deploy", "-n", ns).stdout)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows[0]["NAME"] == "table-deploy"
    assert rows[0]["READY"] == "0/1"  # its pod can never be scheduled
    header, _ = parse_table(
        kubectl.run("get", "deployments", "table-deploy", "-n", ns, "-o", "wide").stdout)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE",
                      "CONTAINERS", "IMAGES", "SELECTOR"]


def test_service_table_columns(kubectl, ns, cluster, tmp_path):
    kubectl.create_from(tmp_path / "svc.yaml", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "table-svc", "namespace": ns},
        "spec": {"selector": {"app": "table"}, "ports": [{"port": 80}]},
    })
    header, rows = parse_table(kubectl.run("get", "services", "table-svc", "-n", ns).stdout)
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    row = rows[0]
    assert row["TYPE"] == "ClusterIP"
    ip = ipaddress.ip_address(row["CLUSTER-IP"])
    if cluster.is_kedge:
        assert ip in KEDGE_SERVICE_CIDR
    assert row["EXTERNAL-IP"] == "<none>"
    assert row["PORT(S)"] == "80/TCP"


def test_configmap_and_secret_table_columns(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "objs.yaml", [
        configmap(ns, "table-cm", {"a": "1", "b": "2"}),
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": "table-secret", "namespace": ns},
         "data": {"a": "MQ==", "b": "Mg==", "c": "Mw=="}},
    ])
    header, rows = parse_table(kubectl.run("get", "configmaps", "table-cm", "-n", ns).stdout)
    assert header == ["NAME", "DATA", "AGE"]
    assert rows[0]["DATA"] == "2"
    header, rows = parse_table(kubectl.run("get", "secrets", "table-secret", "-n", ns).stdout)
    assert header == ["NAME", "TYPE", "DATA", "AGE"]
    assert rows[0]["TYPE"] == "Opaque" and rows[0]["DATA"] == "3"


def test_create_generators(kubectl, ns, cluster):
    """`kubectl create namespace|configmap` build typed objects in kubectl;
    kubectl 1.33 sends them as protobuf (application/vnd.kubernetes.protobuf)."""
    name = f"conf-gen-{kubectl.tag}-{cluster.suffix}"
    try:
        out = kubectl.run("create", "namespace", name).stdout
        assert f"namespace/{name} created" in out, out
        assert kubectl.json("get", "namespace", name)["status"]["phase"] == "Active"
    finally:
        kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found",
                    check=False)
    out = kubectl.run("create", "configmap", "gen-cm", "-n", ns,
                      "--from-literal=a=1", "--from-literal=b=2").stdout
    assert "configmap/gen-cm created" in out, out
    assert kubectl.json("get", "configmap", "gen-cm", "-n", ns)["data"] == {"a": "1", "b": "2"}


# ------------------------------------------------------------- selectors --

def test_label_selectors(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "cms.yaml", [
        configmap(ns, "sel-a", labels={"app": "a"}),
        configmap(ns, "sel-b", labels={"app": "b", "x": "1"}),
        configmap(ns, "sel-c", labels={"app": "c"}),
    ])
    assert kubectl.names("get", "configmaps", "-n", ns, "-l", "app=a") == {"sel-a"}
    assert kubectl.names("get", "configmaps", "-n", ns, "-l", "app in (a,b)") == \
        {"sel-a", "sel-b"}
    assert kubectl.names("get", "configmaps", "-n", ns, "-l", "app,app notin (a)") == \
        {"sel-b", "sel-c"}
    without_x = kubectl.names("get", "configmaps", "-n", ns, "-l", "!x")
    assert {"sel-a", "sel-c"} <= without_x
    assert "sel-b" not in without_x


def test_field_selector_metadata_name(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "cms.yaml", [
        configmap(ns, "field-a"), configmap(ns, "field-b")])
    assert kubectl.names("get", "configmaps", "-n", ns,
                         "--field-selector", "metadata.name=field-a") == {"field-a"}
    others = kubectl.names("get", "configmaps", "-n", ns,
                           "--field-selector", "metadata.name!=field-a")
    assert "field-b" in others and "field-a" not in others


def test_field_selector_pod_phase(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "pod.yaml", pod(ns, "phase-pod"))
    assert "phase-pod" in kubectl.names("get", "pods", "-n", ns,
                                        "--field-selector", "status.phase=Pending")
    assert "phase-pod" not in kubectl.names("get", "pods", "-n", ns,
                                            "--field-selector", "status.phase=Running")


def test_field_selector_secret_type(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "secrets.yaml", [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": "type-opaque", "namespace": ns}, "data": {"a": "MQ=="}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kedge.io/conformance",
         "metadata": {"name": "type-custom", "namespace": ns}, "data": {"a": "MQ=="}},
    ])
    opaque = kubectl.names("get", "secrets", "-n", ns, "--field-selector", "type=Opaque")
    assert "type-opaque" in opaque and "type-custom" not in opaque
    custom = kubectl.names("get", "secrets", "-n", ns,
                           "--field-selector", "type=kedge.io/conformance")
    assert custom == {"type-custom"}


# ----------------------------------------------------------------- watch --

def test_watch_output_events(kubectl, ns, tmp_path):
    labels = {"watch": "kubectl"}
    kubectl.create_from(tmp_path / "w0.yaml", configmap(ns, "watch-0", labels=labels))
    proc = kubectl.popen("get", "configmaps", "-n", ns, "-l", "watch=kubectl",
                         "-w", "--output-watch-events")
    lines: "queue.Queue[str]" = queue.Queue()
    seen: list = []

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()

    def wait_for(pred, what, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if proc.poll() is not None:
                    break
                continue
            seen.append(line)
            if pred(line.split()):
                return
        stderr = proc.stderr.read() if proc.poll() is not None else ""
        raise AssertionError(f"no {what} within {timeout}s; watch printed:\n"
                             + "\n".join(seen) + f"\nstderr:\n{stderr}")

    try:
        # The initial list comes first, as ADDED events: the watch is set up.
        wait_for(lambda f: f[:2] == ["ADDED", "watch-0"], "ADDED watch-0")
        kubectl.create_from(tmp_path / "w1.yaml", configmap(ns, "watch-1", labels=labels))
        kubectl.run("delete", "configmap", "watch-1", "-n", ns)
        wait_for(lambda f: f[:2] == ["DELETED", "watch-1"], "DELETED watch-1")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()
            proc.wait(timeout=10)

    assert seen[0].split()[:2] == ["EVENT", "NAME"], seen
    events = [tuple(line.split()[:2]) for line in seen[1:]]
    assert ("ADDED", "watch-1") in events, seen
    assert events.index(("ADDED", "watch-1")) < events.index(("DELETED", "watch-1")), seen


# ------------------------------------------------------ errors and waits --

def test_stale_replace_conflicts(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "cm.yaml", configmap(ns, "stale-cm", {"a": "1"}))
    saved = yaml.safe_load(kubectl.run("get", "configmap", "stale-cm", "-n", ns,
                                       "-o", "yaml").stdout)
    fresh = copy.deepcopy(saved)
    fresh["data"]["a"] = "2"
    write_yaml(tmp_path / "fresh.yaml", fresh)
    out = kubectl.run("replace", "--validate=false", "-f", tmp_path / "fresh.yaml").stdout
    assert "replaced" in out, out

    saved["data"]["a"] = "3"  # an edit of the saved copy, old resourceVersion
    write_yaml(tmp_path / "stale.yaml", saved)
    res = kubectl.run("replace", "--validate=false", "-f", tmp_path / "stale.yaml",
                      check=False)
    assert res.rc != 0, res.describe()
    assert "Conflict" in res.stderr or "the object has been modified" in res.stderr, \
        res.describe()
    current = kubectl.json("get", "configmap", "stale-cm", "-n", ns)
    assert current["data"] == {"a": "2"}


@pytest.mark.parametrize("kind", ["configmap", "pod"])
def test_delete_wait(kubectl, ns, kind, tmp_path):
    name = f"delete-wait-{kind}"
    manifest = configmap(ns, name) if kind == "configmap" else pod(ns, name)
    kubectl.create_from(tmp_path / "obj.yaml", manifest)
    start = time.monotonic()
    out = kubectl.run("delete", kind, name, "-n", ns, "--wait=true", "--timeout=60s",
                      timeout=90).stdout
    assert "deleted" in out, out
    # An unscheduled pod has no kubelet to wait for: it goes at once upstream.
    assert time.monotonic() - start < 30
    gone = kubectl.run("get", kind, name, "-n", ns, check=False)
    assert gone.rc != 0 and "NotFound" in gone.stderr, gone.describe()
    assert name not in kubectl.names("get", kind, "-n", ns)


def test_create_in_missing_namespace(kubectl, cluster, tmp_path):
    missing = f"conf-missing-{kubectl.tag}-{cluster.suffix}"
    res = kubectl.create_from(tmp_path / "cm.yaml", configmap(missing, "orphan"),
                              check=False)
    assert res.rc != 0, res.describe()
    assert "NotFound" in res.stderr, res.describe()
    assert f'namespaces "{missing}" not found' in res.stderr, res.describe()
