"""kubectl workflows of the API-semantics milestone, with stock kubectl at
both ends of the supported range (the `kubectl` fixture in conftest.py).

Every test states upstream Kubernetes behaviour. A test of something kedge
does not do yet is marked `kedge_xfail("kedge: ...")`, a strict xfail where
kedge is under test (other clusters must pass it): the suite stays green, and
the test turns into a loud XPASS failure the day the feature lands, so the
mark has to go then. A mark that holds for one kubectl
version only goes inside the test:
`if kubectl.version == "1.27": request.applymarker(kedge_xfail("kedge: ..."))`.

Pods never run: every pod and pod template carries the node selector no node
has (manifests.UNSCHEDULABLE), and deployments are created with 0 replicas
where the test does not need more.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from kubeutil import Kubectl, kedge_xfail, parse_table, write_yaml
from manifests import IMAGE, UNSCHEDULABLE, configmap, deployment, pod

# Why the xfail tests fail today; each test names the one it needs.


@pytest.fixture(scope="module")
def ns(kubectl, cluster):
    name = f"conf-sem-{kubectl.tag}-{cluster.suffix}"
    kubectl.create_from(cluster.workdir / f"{name}.yaml",
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found",
                check=False)


# ---------------------------------------------------------------- helpers --

def wait_until(check: Callable[[], object], what: str, timeout: float = 15.0):
    """Poll `check` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


def get_or_none(kubectl: Kubectl, *args) -> Optional[dict]:
    """`get ... -o json`, or None when the object is NotFound."""
    res = kubectl.run("get", *args, "-o", "json", check=False)
    if res.rc != 0:
        assert "NotFound" in res.stderr or "not found" in res.stderr, res.describe()
        return None
    return json.loads(res.stdout)


def _written(path: Path, manifest) -> Path:
    """Write `manifest` as YAML to `path`; return `path`."""
    write_yaml(path, manifest)
    return path


def apply(kubectl: Kubectl, path: Path, manifest, *extra, check: bool = True):
    """Client-side `kubectl apply` of `manifest` (validation off: see the
    default-validation tests for why)."""
    write_yaml(path, manifest)
    return kubectl.run("apply", "--validate=false", "-f", path, *extra, check=check)


def managed_by(obj: dict, manager: str, operation: Optional[str] = None) -> list:
    return [e for e in obj["metadata"].get("managedFields") or []
            if e.get("manager") == manager
            and (operation is None or e.get("operation") == operation)]


def service(ns: str, name: str, ports: list) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": ports}}


def env_deployment(ns: str, name: str, env: list, ports: list) -> dict:
    d = deployment(ns, name, replicas=0)
    c = d["spec"]["template"]["spec"]["containers"][0]
    c["env"] = env
    c["ports"] = ports
    return d


def containers(obj: dict) -> dict:
    return {c["name"]: c for c in obj["spec"]["template"]["spec"]["containers"]}


# ------------------------------------------------------ client-side apply --

def test_apply_created_unchanged_configured(kubectl, ns, tmp_path):
    path = tmp_path / "cm.yaml"
    manifest = configmap(ns, "apply-cm", {"a": "1", "b": "2"})
    out = apply(kubectl, path, manifest).stdout
    assert out.strip() == "configmap/apply-cm created", out
    live = kubectl.json("get", "configmap", "apply-cm", "-n", ns)
    last = json.loads(live["metadata"]["annotations"]
                      ["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["data"] == {"a": "1", "b": "2"}, last

    out = apply(kubectl, path, manifest).stdout
    assert out.strip() == "configmap/apply-cm unchanged", out

    # A change made by someone else survives a re-apply (three-way merge).
    kubectl.run("annotate", "configmap", "apply-cm", "-n", ns, "other=kept")
    manifest["data"] = {"a": "changed", "c": "3"}  # a changed, b removed, c added
    out = apply(kubectl, path, manifest).stdout
    assert out.strip() == "configmap/apply-cm configured", out
    live = kubectl.json("get", "configmap", "apply-cm", "-n", ns)
    assert live["data"] == {"a": "changed", "c": "3"}, live["data"]
    assert live["metadata"]["annotations"]["other"] == "kept", live["metadata"]


def test_apply_removes_list_entries(kubectl, ns, tmp_path):
    """Re-applying a manifest without an env var and a port removes them: the
    patch kubectl computes deletes list entries by merge key (env: name,
    ports: containerPort)."""
    path = tmp_path / "deploy.yaml"
    manifest = env_deployment(
        ns, "apply-lists",
        env=[{"name": "KEEP", "value": "1"}, {"name": "DROP", "value": "2"}],
        ports=[{"containerPort": 80}, {"containerPort": 81}])
    assert "created" in apply(kubectl, path, manifest).stdout
    c = manifest["spec"]["template"]["spec"]["containers"][0]
    c["env"] = [{"name": "KEEP", "value": "1"}]
    c["ports"] = [{"containerPort": 80}]
    out = apply(kubectl, path, manifest).stdout
    assert "configured" in out, out
    live = containers(kubectl.json("get", "deployment", "apply-lists", "-n", ns))["c"]
    assert live["env"] == [{"name": "KEEP", "value": "1"}], live
    assert [p["containerPort"] for p in live["ports"]] == [80], live
    assert live["image"] == IMAGE, live


def test_default_validation(kubectl, ns, tmp_path):
    """apply, create and edit without --validate=false: kubectl validates
    against the server's OpenAPI (or asks the server to, fieldValidation);
    every other test turns validation off so as not to depend on it."""
    out = kubectl.run("apply", "-f", _written(tmp_path / "a.yaml",
                                               configmap(ns, "validated-apply"))).stdout
    assert "configmap/validated-apply created" in out, out
    out = kubectl.run("create", "-f", _written(
        tmp_path / "c.yaml", configmap(ns, "validated-create", {"a": "old-value"}))).stdout
    assert "configmap/validated-create created" in out, out
    out = kubectl.run("edit", "configmap", "validated-create", "-n", ns,
                      env={"KUBE_EDITOR": "sed -i s/old-value/new-value/"}).stdout
    assert "configmap/validated-create edited" in out, out
    assert kubectl.json("get", "configmap", "validated-create", "-n", ns)["data"] == \
        {"a": "new-value"}


def test_default_validation_rejects_unknown_field(kubectl, ns, tmp_path):
    manifest = configmap(ns, "typo-cm")
    manifest["datta"] = {"a": "1"}
    res = kubectl.run("apply", "-f", _written(tmp_path / "typo.yaml", manifest),
                      check=False)
    assert res.rc != 0, res.describe()
    assert "unknown field" in res.stderr and "datta" in res.stderr, res.describe()
    assert get_or_none(kubectl, "configmap", "typo-cm", "-n", ns) is None


# ------------------------------------------------------ server-side apply --

def test_server_side_apply(kubectl, ns, tmp_path):
    path = tmp_path / "ssa.yaml"
    write_yaml(path, configmap(ns, "ssa-cm", {"a": "1", "b": "2"}))
    out = kubectl.run("apply", "--server-side", "--validate=false", "-f", path).stdout
    assert out.strip() == "configmap/ssa-cm serverside-applied", out
    live = kubectl.json("get", "configmap", "ssa-cm", "-n", ns, "--show-managed-fields")
    assert live["data"] == {"a": "1", "b": "2"}
    entries = managed_by(live, "kubectl", "Apply")
    assert entries, live["metadata"].get("managedFields")
    assert {"f:a", "f:b"} <= set(entries[0]["fieldsV1"]["f:data"]), entries
    # No last-applied annotation: that is client-side apply's bookkeeping.
    assert "kubectl.kubernetes.io/last-applied-configuration" not in \
        (live["metadata"].get("annotations") or {}), live["metadata"]

    # Leaving out a field this manager owned removes it.
    write_yaml(path, configmap(ns, "ssa-cm", {"a": "1"}))
    kubectl.run("apply", "--server-side", "--validate=false", "-f", path)
    assert kubectl.json("get", "configmap", "ssa-cm", "-n", ns)["data"] == {"a": "1"}


def test_server_side_apply_conflicts(kubectl, ns, tmp_path):
    mine, theirs = tmp_path / "mine.yaml", tmp_path / "theirs.yaml"
    write_yaml(mine, configmap(ns, "ssa-conflict", {"a": "1"}))
    kubectl.run("apply", "--server-side", "--validate=false", "-f", mine)

    # Another manager setting a field nobody owns: no conflict, shared object.
    write_yaml(theirs, configmap(ns, "ssa-conflict", {"b": "2"}))
    kubectl.run("apply", "--server-side", "--validate=false", "--field-manager=other",
                "-f", theirs)
    assert kubectl.json("get", "configmap", "ssa-conflict", "-n", ns)["data"] == \
        {"a": "1", "b": "2"}

    # ... and one that changes kubectl's field: a conflict, nothing written.
    write_yaml(theirs, configmap(ns, "ssa-conflict", {"a": "theirs", "b": "2"}))
    res = kubectl.run("apply", "--server-side", "--validate=false",
                      "--field-manager=other", "-f", theirs, check=False)
    assert res.rc != 0, res.describe()
    assert "conflict" in res.stderr and '"kubectl"' in res.stderr, res.describe()
    assert ".data.a" in res.stderr, res.describe()
    assert kubectl.json("get", "configmap", "ssa-conflict", "-n", ns)["data"]["a"] == "1"

    # --force-conflicts takes the field over.
    kubectl.run("apply", "--server-side", "--validate=false", "--field-manager=other",
                "--force-conflicts", "-f", theirs)
    live = kubectl.json("get", "configmap", "ssa-conflict", "-n", ns,
                        "--show-managed-fields")
    assert live["data"] == {"a": "theirs", "b": "2"}
    other = managed_by(live, "other", "Apply")
    assert other and "f:a" in other[0]["fieldsV1"]["f:data"], live["metadata"]
    for entry in managed_by(live, "kubectl"):
        assert "f:a" not in entry.get("fieldsV1", {}).get("f:data", {}), entry


# ------------------------------------------------------------------- diff --

def test_diff(kubectl, ns, tmp_path):
    path = tmp_path / "cm.yaml"
    apply(kubectl, path, configmap(ns, "diff-cm", {"a": "1"}))

    same = kubectl.run("diff", "-f", path, check=False)
    assert same.rc == 0 and same.stdout == "", same.describe()

    write_yaml(path, configmap(ns, "diff-cm", {"a": "2"}))
    changed = kubectl.run("diff", "-f", path, check=False)
    assert changed.rc == 1, changed.describe()
    assert re.search(r'^-\s+a: "1"$', changed.stdout, re.M), changed.describe()
    assert re.search(r'^\+\s+a: "2"$', changed.stdout, re.M), changed.describe()
    # A dry run: the live object is untouched.
    assert kubectl.json("get", "configmap", "diff-cm", "-n", ns)["data"] == {"a": "1"}

    write_yaml(path, configmap(ns, "diff-new", {"a": "1"}))
    new = kubectl.run("diff", "-f", path, check=False)
    assert new.rc == 1 and re.search(r"^\+\s+name: diff-new$", new.stdout, re.M), \
        new.describe()
    assert get_or_none(kubectl, "configmap", "diff-new", "-n", ns) is None


# ------------------------------------------------------------------ patch --

def test_patch_json(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "cm.yaml",
                        configmap(ns, "patch-json", {"a": "1", "c": "3"}))
    ops = [{"op": "replace", "path": "/data/a", "value": "2"},
           {"op": "add", "path": "/data/b", "value": "x"},
           {"op": "remove", "path": "/data/c"}]
    out = kubectl.run("patch", "configmap", "patch-json", "-n", ns, "--type", "json",
                      "-p", json.dumps(ops)).stdout
    assert "patched" in out, out
    assert kubectl.json("get", "configmap", "patch-json", "-n", ns)["data"] == \
        {"a": "2", "b": "x"}
    # A failing `test` operation fails the whole patch.
    ops = [{"op": "test", "path": "/data/a", "value": "not-2"},
           {"op": "replace", "path": "/data/a", "value": "9"}]
    res = kubectl.run("patch", "configmap", "patch-json", "-n", ns, "--type", "json",
                      "-p", json.dumps(ops), check=False)
    assert res.rc != 0, res.describe()
    assert kubectl.json("get", "configmap", "patch-json", "-n", ns)["data"]["a"] == "2"


def test_patch_merge(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "objs.yaml", [
        configmap(ns, "patch-merge", {"a": "1", "b": "2"}),
        deployment(ns, "patch-merge", replicas=0),
    ])
    kubectl.run("patch", "configmap", "patch-merge", "-n", ns, "--type", "merge",
                "-p", '{"metadata":{"labels":{"m":"1"}},"data":{"a":"2","b":null}}')
    live = kubectl.json("get", "configmap", "patch-merge", "-n", ns)
    assert live["data"] == {"a": "2"}, live["data"]
    assert live["metadata"]["labels"] == {"m": "1"}
    # RFC 7386: a list in the patch replaces the list.
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": IMAGE, "command": ["sleep", "3600"]}]}}}}
    kubectl.run("patch", "deployment", "patch-merge", "-n", ns, "--type", "merge",
                "-p", json.dumps(patch))
    live = kubectl.json("get", "deployment", "patch-merge", "-n", ns)
    assert list(containers(live)) == ["only"], containers(live)


def test_patch_strategic_container_by_name(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "deploy.yaml", deployment(ns, "patch-smp", replicas=0))
    sidecar = {"name": "sidecar", "image": IMAGE, "command": ["sleep", "60"]}
    out = kubectl.run("patch", "deployment", "patch-smp", "-n", ns, "-p",
                      json.dumps({"spec": {"template": {"spec": {
                          "containers": [sidecar]}}}})).stdout
    assert "patched" in out, out
    live = containers(kubectl.json("get", "deployment", "patch-smp", "-n", ns))
    assert set(live) == {"c", "sidecar"}, live
    assert live["c"]["image"] == IMAGE and live["c"]["command"] == ["sleep", "3600"], live
    # Naming an existing container merges into it.
    kubectl.run("patch", "deployment", "patch-smp", "-n", ns, "-p",
                json.dumps({"spec": {"template": {"spec": {"containers": [
                    {"name": "c", "image": "busybox:1.36"}]}}}}))
    live = containers(kubectl.json("get", "deployment", "patch-smp", "-n", ns))
    assert set(live) == {"c", "sidecar"}, live
    assert live["c"]["image"] == "busybox:1.36", live
    assert live["c"]["command"] == ["sleep", "3600"], live


def test_patch_strategic_one_port(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "svc.yaml", service(ns, "patch-ports", [
        {"name": "http", "port": 80, "targetPort": 8080},
        {"name": "metrics", "port": 81, "targetPort": 9090}]))
    kubectl.run("patch", "service", "patch-ports", "-n", ns, "-p",
                '{"spec":{"ports":[{"port":81,"targetPort":9091}]}}')
    ports = {p["port"]: p for p in
             kubectl.json("get", "service", "patch-ports", "-n", ns)["spec"]["ports"]}
    assert set(ports) == {80, 81}, ports
    assert ports[81]["targetPort"] == 9091 and ports[81]["name"] == "metrics", ports
    assert ports[80]["targetPort"] == 8080 and ports[80]["name"] == "http", ports
    # The delete directive removes one entry by its merge key.
    kubectl.run("patch", "service", "patch-ports", "-n", ns, "-p",
                '{"spec":{"ports":[{"port":80,"$patch":"delete"}]}}')
    ports = kubectl.json("get", "service", "patch-ports", "-n", ns)["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in ports] == [(81, 9091)], ports


# --------------------------------------------- edit, label, annotate, scale --

def test_edit(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "cm.yaml", configmap(ns, "edit-cm", {"a": "old-value"}))
    out = kubectl.run("edit", "--validate=false", "configmap", "edit-cm", "-n", ns,
                      env={"KUBE_EDITOR": "sed -i s/old-value/new-value/"}).stdout
    assert "configmap/edit-cm edited" in out, out
    assert kubectl.json("get", "configmap", "edit-cm", "-n", ns)["data"] == {"a": "new-value"}
    # An editor that changes nothing: nothing is sent.
    before = kubectl.json("get", "configmap", "edit-cm", "-n", ns)["metadata"]
    res = kubectl.run("edit", "--validate=false", "configmap", "edit-cm", "-n", ns,
                      env={"KUBE_EDITOR": "true"})
    assert "Edit cancelled, no changes made" in res.stdout + res.stderr, res.describe()
    after = kubectl.json("get", "configmap", "edit-cm", "-n", ns)["metadata"]
    assert after["resourceVersion"] == before["resourceVersion"]


def test_label_and_annotate(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "cm.yaml", configmap(ns, "tagged"))
    target = ["configmap", "tagged", "-n", ns]

    def meta():
        return kubectl.json("get", *target)["metadata"]

    assert "labeled" in kubectl.run("label", *target, "env=dev").stdout
    assert meta()["labels"] == {"env": "dev"}
    res = kubectl.run("label", *target, "env=prod", check=False)
    assert res.rc != 0 and "already has a value" in res.stderr, res.describe()
    kubectl.run("label", *target, "env=prod", "--overwrite")
    assert meta()["labels"] == {"env": "prod"}
    assert "unlabeled" in kubectl.run("label", *target, "env-").stdout
    assert not meta().get("labels"), meta()
    assert kubectl.names("get", "configmaps", "-n", ns, "-l", "env") == set()

    # kubectl 1.27 prints "annotate", later ones "annotated".
    assert "annotate" in kubectl.run("annotate", *target, "note=hello").stdout
    assert meta()["annotations"]["note"] == "hello"
    res = kubectl.run("annotate", *target, "note=bye", check=False)
    assert res.rc != 0 and "already has a value" in res.stderr, res.describe()
    kubectl.run("annotate", *target, "note=bye", "--overwrite")
    assert meta()["annotations"]["note"] == "bye"
    kubectl.run("annotate", *target, "note-")
    assert "note" not in (meta().get("annotations") or {}), meta()


def test_scale_deployment(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "deploy.yaml", deployment(ns, "scaled", replicas=0))
    out = kubectl.run("scale", "deployment/scaled", "-n", ns, "--replicas=2").stdout
    assert "deployment.apps/scaled scaled" in out, out
    assert kubectl.json("get", "deployment", "scaled", "-n", ns)["spec"]["replicas"] == 2
    # A precondition on the current size that does not hold.
    res = kubectl.run("scale", "deployment/scaled", "-n", ns, "--current-replicas=5",
                      "--replicas=3", check=False)
    assert res.rc != 0, res.describe()
    assert kubectl.json("get", "deployment", "scaled", "-n", ns)["spec"]["replicas"] == 2


def test_scale_with_current_replicas(kubectl, ns, tmp_path):
    """With a precondition kubectl reads the Scale and PUTs it back (client-go's
    scale client, which sends the body without a Content-Type)."""
    kubectl.create_from(tmp_path / "deploy.yaml", deployment(ns, "prescaled", replicas=0))
    out = kubectl.run("scale", "deployment/prescaled", "-n", ns, "--current-replicas=0",
                      "--replicas=2").stdout
    assert "deployment.apps/prescaled scaled" in out, out
    assert kubectl.json("get", "deployment", "prescaled", "-n", ns)["spec"]["replicas"] == 2


# ------------------------------------------------ deletion and waiting --

def _owner_and_dependent(kubectl, ns, tmp_path, name, finalizer=False):
    kubectl.create_from(tmp_path / "owner.yaml", configmap(ns, f"{name}-owner"))
    uid = kubectl.json("get", "configmap", f"{name}-owner", "-n", ns)["metadata"]["uid"]
    dep = configmap(ns, f"{name}-dep")
    dep["metadata"]["ownerReferences"] = [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": f"{name}-owner", "uid": uid,
        "blockOwnerDeletion": True}]
    if finalizer:
        dep["metadata"]["finalizers"] = ["conformance.kedge.io/hold"]
    kubectl.create_from(tmp_path / "dep.yaml", dep)
    return ["configmap", f"{name}-owner", "-n", ns], ["configmap", f"{name}-dep", "-n", ns]


def _release(kubectl, target):
    kubectl.run("patch", *target, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                check=False)


@pytest.mark.parametrize("cascade", ["background", "foreground", "orphan"])
def test_delete_cascade(kubectl, ns, tmp_path, cascade):
    owner, dep = _owner_and_dependent(kubectl, ns, tmp_path, f"cascade-{cascade}",
                                      finalizer=cascade == "foreground")
    try:
        if cascade == "background":
            kubectl.run("delete", *owner, "--cascade=background", timeout=90)
            assert get_or_none(kubectl, *owner) is None
            wait_until(lambda: get_or_none(kubectl, *dep) is None,
                       "the garbage collector deletes the dependent")
        elif cascade == "orphan":
            kubectl.run("delete", *owner, "--cascade=orphan", timeout=90)
            assert get_or_none(kubectl, *owner) is None
            time.sleep(1)  # give a (wrong) collection the chance to happen
            left = wait_until(
                lambda: (o := get_or_none(kubectl, *dep)) is not None
                and not o["metadata"].get("ownerReferences") and o,
                "the orphaned dependent loses its ownerReference")
            assert left["data"] == {"a": "1"}
        else:
            # The dependent's finalizer holds it, and it holds the owner.
            kubectl.run("delete", *owner, "--cascade=foreground", "--wait=false")
            dependent = wait_until(
                lambda: (o := get_or_none(kubectl, *dep)) and
                o["metadata"].get("deletionTimestamp") and o,
                "the garbage collector deletes the dependent first")
            assert "conformance.kedge.io/hold" in dependent["metadata"]["finalizers"]
            waiting = get_or_none(kubectl, *owner)
            assert waiting is not None, "the owner went before its blocking dependent"
            assert waiting["metadata"].get("deletionTimestamp"), waiting["metadata"]
            assert "foregroundDeletion" in waiting["metadata"].get("finalizers", []), \
                waiting["metadata"]
            _release(kubectl, dep)
            # Both may be gone before it looks: then it says nothing, and exits 0.
            kubectl.run("wait", "--for=delete", owner[0] + "/" + owner[1],
                        dep[0] + "/" + dep[1], "-n", ns, "--timeout=30s", timeout=60)
            assert get_or_none(kubectl, *owner) is None and get_or_none(kubectl, *dep) is None
    finally:
        _release(kubectl, dep)
        kubectl.run("delete", *owner, "--ignore-not-found", "--wait=false", check=False)
        kubectl.run("delete", *dep, "--ignore-not-found", "--wait=false", check=False)


def test_wait_for_delete(kubectl, ns, tmp_path):
    held = configmap(ns, "wait-delete")
    held["metadata"]["finalizers"] = ["conformance.kedge.io/hold"]
    kubectl.create_from(tmp_path / "cm.yaml", held)
    target = ["configmap", "wait-delete", "-n", ns]
    try:
        kubectl.run("delete", *target, "--wait=false")
        waiter = kubectl.popen("wait", "--for=delete", "configmap/wait-delete", "-n", ns,
                               "--timeout=30s")
        try:
            time.sleep(1.0)
            assert waiter.poll() is None, \
                f"kubectl wait returned while a finalizer holds the object: " \
                f"{waiter.communicate()}"
            _release(kubectl, target)
            out, err = waiter.communicate(timeout=20)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.communicate()
        assert waiter.returncode == 0, (out, err)
        assert "configmap/wait-delete condition met" in out, (out, err)
        assert get_or_none(kubectl, *target) is None
    finally:
        _release(kubectl, target)
        kubectl.run("delete", *target, "--ignore-not-found", "--wait=false", check=False)


# ------------------------------------------------- explain, describe, auth --

def test_explain_builtin(kubectl):
    out = kubectl.run("explain", "pod.spec.containers.resources").stdout
    assert re.search(r"^KIND:\s+Pod$", out, re.M), out
    assert re.search(r"^FIELD:\s+resources\b", out, re.M), out
    for field in ("limits", "requests"):
        assert re.search(rf"^\s+{field}\s+<", out, re.M), out


def test_describe_pod_shows_event(kubectl, ns, tmp_path):
    kubectl.create_from(tmp_path / "pod.yaml", pod(ns, "described"))
    uid = kubectl.json("get", "pod", "described", "-n", ns)["metadata"]["uid"]
    kubectl.create_from(tmp_path / "event.yaml", {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "described.conformance", "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "described",
                           "namespace": ns, "uid": uid},
        "reason": "ConformanceCheck",
        "message": "seen by kubectl describe",
        "type": "Warning",
        "source": {"component": "kedge-conformance"},
        "firstTimestamp": "2025-01-01T00:00:00Z",
        "lastTimestamp": "2025-01-01T00:00:00Z",
        "count": 1,
    })
    out = kubectl.run("describe", "pod", "described", "-n", ns).stdout
    assert re.search(r"^Name:\s+described$", out, re.M), out
    assert re.search(r"^Status:\s+Pending$", out, re.M), out
    events = out.split("\nEvents:", 1)
    assert len(events) == 2, out
    row = [line.split(None, 4) for line in events[1].splitlines()
           if "ConformanceCheck" in line]
    assert row, out
    assert row[0][0] == "Warning" and row[0][1] == "ConformanceCheck", row
    assert row[0][3] == "kedge-conformance" and row[0][4] == "seen by kubectl describe", row


def test_auth_can_i(kubectl, ns):
    yes = kubectl.run("auth", "can-i", "create", "pods", "-n", ns, check=False)
    assert yes.rc == 0 and yes.stdout.strip() == "yes", yes.describe()
    no = kubectl.run("auth", "can-i", "get", "pods", "-n", ns, "--as=nobody", check=False)
    assert no.rc == 1 and no.stdout.strip() == "no", no.describe()


def test_auth_whoami(kubectl, cluster):
    out = kubectl.run("auth", "whoami").stdout
    _, rows = parse_table(out)
    attrs = {r["ATTRIBUTE"]: r["VALUE"] for r in rows}
    assert attrs.get("Username"), out
    if cluster.is_kedge:
        assert attrs["Username"] == "system:admin", out
        assert "system:masters" in attrs["Groups"], out
    as_other = kubectl.json("auth", "whoami", "--as=somebody", "--as-group=team")
    user = as_other["status"]["userInfo"]
    assert user["username"] == "somebody", as_other
    assert "team" in user["groups"], as_other


# ------------------------------------------------------ create generators --

def test_create_secret_deployment_and_run(kubectl, ns):
    out = kubectl.run("create", "secret", "generic", "gen-secret", "-n", ns,
                      "--from-literal=user=admin", "--from-literal=pass=s3cr3t").stdout
    assert "secret/gen-secret created" in out, out
    secret = kubectl.json("get", "secret", "gen-secret", "-n", ns)
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"user": "YWRtaW4=", "pass": "czNjcjN0"}, secret["data"]

    out = kubectl.run("create", "deployment", "gen-deploy", "-n", ns, f"--image={IMAGE}",
                      "--replicas=0", "--", "sleep", "3600").stdout
    assert "deployment.apps/gen-deploy created" in out, out
    d = kubectl.json("get", "deployment", "gen-deploy", "-n", ns)
    assert d["spec"]["replicas"] == 0
    assert d["spec"]["selector"] == {"matchLabels": {"app": "gen-deploy"}}
    c = d["spec"]["template"]["spec"]["containers"]
    assert [(x["name"], x["image"], x["command"]) for x in c] == \
        [("busybox", IMAGE, ["sleep", "3600"])], c

    overrides = json.dumps({"apiVersion": "v1",
                            "spec": {"nodeSelector": dict(UNSCHEDULABLE)}})
    out = kubectl.run("run", "gen-pod", "-n", ns, f"--image={IMAGE}",
                      f"--overrides={overrides}", "--labels=conf=run",
                      "--", "sleep", "3600").stdout
    assert "pod/gen-pod created" in out, out
    p = kubectl.json("get", "pod", "gen-pod", "-n", ns)
    assert p["metadata"]["labels"] == {"conf": "run"}
    assert p["spec"]["nodeSelector"] == UNSCHEDULABLE
    assert p["spec"]["containers"][0]["args"] == ["sleep", "3600"]
    assert p["status"]["phase"] == "Pending"
    kubectl.run("delete", "pod", "gen-pod", "-n", ns, "--wait=false")


# ------------------------------------------------------------------- CRDs --

def crd_group(kubectl, cluster) -> str:
    return f"{kubectl.tag}-{cluster.suffix}.semantics.kedge.io"


def gadget_crd(group: str) -> dict:
    """Two versions (conversion None), a structural schema with a required
    field, an enum, a pattern, a minimum, defaults and a subtree that keeps
    unknown fields; printer columns; status and scale subresources."""
    subresources = {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                            "statusReplicasPath": ".status.replicas"}}
    spec_v1 = {
        "type": "object",
        "description": "What the gadget should be.",
        "required": ["size"],
        "properties": {
            "size": {"type": "string", "enum": ["small", "medium", "large"],
                     "description": "How big the gadget is."},
            "code": {"type": "string", "pattern": "^[a-z]+-[0-9]+$"},
            "replicas": {"type": "integer", "minimum": 0, "default": 1},
            "color": {"type": "string", "default": "blue"},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    spec_v1beta1 = {"type": "object", "properties": {
        "size": {"type": "string"}, "code": {"type": "string"},
        "replicas": {"type": "integer"}, "color": {"type": "string"},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    status = {"type": "object", "properties": {"replicas": {"type": "integer"}}}

    def version(name, storage, spec, columns):
        return {"name": name, "served": True, "storage": storage,
                "subresources": subresources,
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A Gadget is a test object of the kedge conformance suite.",
                    "properties": {"spec": spec, "status": status}}}}

    size_col = {"name": "Size", "type": "string", "jsonPath": ".spec.size"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget",
                      "listKind": "GadgetList", "shortNames": ["gdg"]},
            "conversion": {"strategy": "None"},
            "versions": [
                version("v1", True, spec_v1, [
                    size_col,
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ]),
                version("v1beta1", False, spec_v1beta1, [size_col]),
            ],
        },
    }


def wait_established(kubectl, crd_name: str) -> str:
    return kubectl.run("wait", "--for=condition=established", f"crd/{crd_name}",
                       "--timeout=30s", timeout=60).stdout


@pytest.fixture(scope="module")
def gadgets(kubectl, cluster):
    """The Gadget CRD of this kubectl version; yields `gadgets.<group>`."""
    group = crd_group(kubectl, cluster)
    crd = gadget_crd(group)
    name = crd["metadata"]["name"]
    kubectl.create_from(cluster.workdir / f"{name}.yaml", crd)
    try:
        wait_established(kubectl, name)
        yield name
    finally:
        kubectl.run("delete", "crd", name, "--ignore-not-found", "--wait=true",
                    "--timeout=60s", timeout=90, check=False)


def gadget(ns: str, name: str, spec: dict, version: str = "v1", group: str = "") -> dict:
    return {"apiVersion": f"{group}/{version}", "kind": "Gadget",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def test_crd_established(kubectl, gadgets):
    out = wait_established(kubectl, gadgets)
    assert f"customresourcedefinition.apiextensions.k8s.io/{gadgets} condition met" in out, out
    conds = {c["type"]: c["status"] for c in
             kubectl.json("get", "crd", gadgets)["status"]["conditions"]}
    assert conds.get("Established") == "True" and conds.get("NamesAccepted") == "True", conds
    group = gadgets.split(".", 1)[1]
    _, rows = parse_table(kubectl.run("api-resources", f"--api-group={group}").stdout)
    assert [(r["NAME"], r["SHORTNAMES"], r["KIND"], r["NAMESPACED"]) for r in rows] == \
        [("gadgets", "gdg", "Gadget", "true")], rows


def test_crd_custom_object_crud(kubectl, ns, gadgets, tmp_path):
    group = gadgets.split(".", 1)[1]
    obj = gadget(ns, "crud", {"size": "small", "code": "ab-1", "replicas": 2,
                              "color": "red"}, group=group)
    out = kubectl.create_from(tmp_path / "g.yaml", obj).stdout
    assert f"gadget.{group}/crud created" in out, out
    live = kubectl.json("get", gadgets, "crud", "-n", ns)
    assert live["apiVersion"] == f"{group}/v1" and live["kind"] == "Gadget"
    assert live["spec"] == obj["spec"], live
    assert live["metadata"]["generation"] == 1
    assert kubectl.names("get", gadgets, "-n", ns) >= {"crud"}
    kubectl.run("patch", gadgets, "crud", "-n", ns, "--type=merge",
                "-p", '{"spec":{"size":"large"}}')
    live = kubectl.json("get", gadgets, "crud", "-n", ns)
    assert live["spec"]["size"] == "large" and live["metadata"]["generation"] == 2
    live["spec"]["color"] = "green"
    write_yaml(tmp_path / "replace.yaml", live)
    kubectl.run("replace", "--validate=false", "-f", tmp_path / "replace.yaml")
    assert kubectl.json("get", gadgets, "crud", "-n", ns)["spec"]["color"] == "green"
    assert "deleted" in kubectl.run("delete", gadgets, "crud", "-n", ns).stdout
    assert get_or_none(kubectl, gadgets, "crud", "-n", ns) is None


def test_crd_printer_columns(kubectl, ns, gadgets, tmp_path):
    group = gadgets.split(".", 1)[1]
    kubectl.create_from(tmp_path / "g.yaml", gadget(
        ns, "columns", {"size": "medium", "replicas": 3}, group=group))
    header, rows = parse_table(kubectl.run("get", gadgets, "columns", "-n", ns).stdout)
    assert header == ["NAME", "SIZE", "REPLICAS", "AGE"]
    assert (rows[0]["NAME"], rows[0]["SIZE"], rows[0]["REPLICAS"]) == \
        ("columns", "medium", "3"), rows
    assert re.match(r"^\d+s$", rows[0]["AGE"]), rows
    # Each version has its own columns.
    header, rows = parse_table(
        kubectl.run("get", f"gadgets.v1beta1.{group}", "columns", "-n", ns).stdout)
    assert header == ["NAME", "SIZE"] and rows[0]["SIZE"] == "medium", (header, rows)


def test_crd_scale_and_status(kubectl, ns, gadgets, tmp_path):
    group = gadgets.split(".", 1)[1]
    kubectl.create_from(tmp_path / "g.yaml", gadget(
        ns, "scaled", {"size": "small", "replicas": 1}, group=group))
    out = kubectl.run("scale", f"{gadgets}/scaled", "-n", ns, "--replicas=4").stdout
    assert f"gadget.{group}/scaled scaled" in out, out
    assert kubectl.json("get", gadgets, "scaled", "-n", ns)["spec"]["replicas"] == 4
    kubectl.run("patch", gadgets, "scaled", "-n", ns, "--subresource=status",
                "--type=merge", "-p", '{"status":{"replicas":2}}')
    # The main resource ignores status, the status subresource everything else.
    kubectl.run("patch", gadgets, "scaled", "-n", ns, "--type=merge",
                "-p", '{"status":{"replicas":9}}')
    assert kubectl.json("get", gadgets, "scaled", "-n", ns)["status"] == {"replicas": 2}
    scale = json.loads(kubectl.run(
        "get", "--raw", f"/apis/{group}/v1/namespaces/{ns}/gadgets/scaled/scale").stdout)
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1", scale
    assert scale["spec"] == {"replicas": 4} and scale["status"]["replicas"] == 2, scale


def test_crd_other_version(kubectl, ns, gadgets, tmp_path):
    group = gadgets.split(".", 1)[1]
    kubectl.create_from(tmp_path / "g.yaml", gadget(
        ns, "old", {"size": "small", "replicas": 1, "color": "red"},
        version="v1beta1", group=group))
    as_v1 = kubectl.json("get", f"gadgets.v1.{group}", "old", "-n", ns)
    as_beta = kubectl.json("get", f"gadgets.v1beta1.{group}", "old", "-n", ns)
    assert as_v1["apiVersion"] == f"{group}/v1", as_v1
    assert as_beta["apiVersion"] == f"{group}/v1beta1", as_beta
    assert as_v1["metadata"]["uid"] == as_beta["metadata"]["uid"]
    assert as_v1["spec"] == as_beta["spec"] == {"size": "small", "replicas": 1,
                                                "color": "red"}


def test_crd_rejects_invalid_objects(kubectl, ns, gadgets, tmp_path):
    group = gadgets.split(".", 1)[1]
    try:
        res = kubectl.create_from(tmp_path / "bad.yaml", gadget(
            ns, "bad", {"size": "huge", "code": "NOPE", "replicas": -1}, group=group),
            "-v=6", check=False)
        assert res.rc != 0, res.describe()
        assert "422 Unprocessable Entity" in res.stderr, res.describe()
        assert '"bad" is invalid' in res.stderr, res.describe()
        for cause in ('spec.size: Unsupported value: "huge"',
                      'spec.code: Invalid value: "NOPE"',
                      "spec.replicas: Invalid value: -1"):
            assert cause in res.stderr, f"{cause!r} missing:\n" + res.describe()
        res = kubectl.create_from(tmp_path / "nosize.yaml", gadget(
            ns, "nosize", {"code": "ab-1"}, group=group), check=False)
        assert res.rc != 0 and "spec.size: Required value" in res.stderr, res.describe()
        assert get_or_none(kubectl, gadgets, "bad", "-n", ns) is None
        assert get_or_none(kubectl, gadgets, "nosize", "-n", ns) is None
    finally:
        kubectl.run("delete", gadgets, "bad", "nosize", "-n", ns, "--ignore-not-found",
                    check=False)


def test_crd_prunes_unknown_fields(kubectl, ns, gadgets, tmp_path):
    group = gadgets.split(".", 1)[1]
    obj = gadget(ns, "pruned", {"size": "small", "replicas": 1, "color": "red",
                                "bogus": "dropped",
                                "extra": {"anything": {"goes": [1, "two"]}}}, group=group)
    obj["junk"] = {"top": "level"}
    kubectl.create_from(tmp_path / "g.yaml", obj)
    live = kubectl.json("get", gadgets, "pruned", "-n", ns)
    assert "junk" not in live, live
    assert live["spec"] == {"size": "small", "replicas": 1, "color": "red",
                            "extra": {"anything": {"goes": [1, "two"]}}}, live["spec"]


def test_crd_applies_defaults(kubectl, ns, gadgets, tmp_path):
    group = gadgets.split(".", 1)[1]
    kubectl.create_from(tmp_path / "g.yaml", gadget(ns, "defaulted", {"size": "small"},
                                                   group=group))
    live = kubectl.json("get", gadgets, "defaulted", "-n", ns)
    assert live["spec"] == {"size": "small", "replicas": 1, "color": "blue"}, live["spec"]


def test_explain_crd_field(kubectl, gadgets):
    group = gadgets.split(".", 1)[1]
    out = kubectl.run("explain", "gadgets.spec.size", f"--api-version={group}/v1").stdout
    assert re.search(r"^KIND:\s+Gadget$", out, re.M), out
    assert re.search(r"^FIELD:\s+size\b", out, re.M), out
    assert "How big the gadget is." in out, out


def test_crd_delete_removes_objects(kubectl, ns, cluster, tmp_path):
    group = crd_group(kubectl, cluster)
    name = f"doodads.{group}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "doodads", "singular": "doodad", "kind": "Doodad"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True}}}]}}
    doodad = {"apiVersion": f"{group}/v1", "kind": "Doodad",
              "metadata": {"name": "d1", "namespace": ns}, "spec": {"x": 1}}
    raw = f"/apis/{group}/v1/namespaces/{ns}/doodads"
    try:
        kubectl.create_from(tmp_path / "crd.yaml", crd)
        wait_established(kubectl, name)
        kubectl.create_from(tmp_path / "d1.yaml", doodad)
        assert kubectl.names("get", name, "-n", ns) == {"d1"}

        kubectl.run("delete", "crd", name, "--wait=true", "--timeout=60s", timeout=90)
        gone = kubectl.run("get", name, "-n", ns, check=False)
        assert gone.rc != 0, gone.describe()
        assert ("doesn't have a resource type" in gone.stderr
                or "NotFound" in gone.stderr), gone.describe()
        res = kubectl.run("get", "--raw", raw, check=False)
        assert res.rc != 0 and "NotFound" in res.stderr, res.describe()

        # Defined again, the kind starts empty: its objects went with it.
        kubectl.create_from(tmp_path / "crd.yaml", crd)
        wait_established(kubectl, name)
        assert json.loads(kubectl.run("get", "--raw", raw).stdout)["items"] == []
    finally:
        kubectl.run("delete", "crd", name, "--ignore-not-found", "--wait=true",
                    "--timeout=60s", timeout=90, check=False)
