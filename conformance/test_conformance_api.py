"""The API-only behaviours of upstream Kubernetes conformance, rewritten for
the official Python client.

Each test names, in its docstring, the upstream conformance codename (from
`test/conformance/testdata/conformance.yaml`, Kubernetes v1.33) whose
behaviour it checks; `test/e2e/apimachinery/*.go` and friends describe them.
Nothing here needs a node, a kubelet or a controller-manager beyond what
the API server itself runs (namespace deletion, garbage collection):
workloads are replaced by objects that need no controller (ConfigMaps as
owners and dependents, PodTemplates for paging), and pods never run.

Behaviour that kedge does not have yet is still checked as upstream
defines it, and marked with `kedge_xfail`: an expected failure when the
cluster under test is kedge (strict, so the day it works the test fails
loudly with XPASS and the mark must go), a plain test against any other
cluster.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from conformance_util import TIMEOUT, Http, Watcher, summarize, wait_for
from manifests import pod_spec

# Whether conftest.py tests kedge: the same rule as its `cluster` fixture,
# needed before any fixture runs because xfail conditions are evaluated then.
# `test_kedge_detection_agrees` checks that the two agree.
ON_KEDGE = (not (os.environ.get("KUBECONFIG") and not os.environ.get("KEDGE_BIN"))
            or os.environ.get("KEDGE_CONFORMANCE_EXPECT_KEDGE") == "1")


def kedge_xfail(reason: str):
    """Upstream behaviour that kedge lacks today: fails on kedge, for `reason`."""
    return pytest.mark.xfail(ON_KEDGE, reason=f"kedge: {reason}", strict=True)


# ---------------------------------------------------------------------------
# Fixtures and small helpers
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(cluster):
    c = config.new_client_from_config(config_file=cluster.kubeconfig)
    yield c
    c.close()


@pytest.fixture(scope="module")
def http(api):
    return Http(api)


@pytest.fixture(scope="module")
def core(api):
    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def coord(api):
    return client.CoordinationV1Api(api)


@pytest.fixture(scope="module")
def events_v1(api):
    return client.EventsV1Api(api)


@pytest.fixture(scope="module")
def apiext(api):
    return client.ApiextensionsV1Api(api)


_ns_numbers = itertools.count()


def _delete_namespace(core, name):
    try:
        core.delete_namespace(name, _request_timeout=TIMEOUT)
    except ApiException as e:
        if e.status != 404:
            raise


@pytest.fixture
def ns(core, cluster):
    """A namespace of this test's own, deleted (without waiting) afterwards."""
    name = f"conf-api-{next(_ns_numbers)}-{cluster.suffix}"
    core.create_namespace({"metadata": {"name": name}}, _request_timeout=TIMEOUT)
    yield name
    _delete_namespace(core, name)


def test_kedge_detection_agrees(cluster):
    """Harness self-check (not an upstream test): the xfail marks of this file
    apply exactly when conftest.py says the cluster is kedge."""
    assert ON_KEDGE == cluster.is_kedge


def api_error(fn, *args, **kwargs) -> ApiException:
    """Call a client method that must fail; return its ApiException."""
    kwargs.setdefault("_request_timeout", TIMEOUT)
    with pytest.raises(ApiException) as e:
        fn(*args, **kwargs)
    return e.value


def status_body(e) -> dict:
    body = json.loads(e.body if isinstance(e, ApiException) else e.data)
    assert body.get("kind") == "Status" and body.get("apiVersion") == "v1", body
    return body


def gone(read, *args) -> bool:
    """Whether reading the object answers 404."""
    try:
        read(*args, _request_timeout=TIMEOUT)
        return False
    except ApiException as e:
        if e.status == 404:
            return True
        raise


def micro(dt: datetime) -> str:
    """A metav1.MicroTime in its wire form."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def names_of(items) -> list:
    return [i.metadata.name for i in items]


# ---------------------------------------------------------------------------
# Watchers (test/e2e/apimachinery/watch.go)
# ---------------------------------------------------------------------------

def _cm_path(ns):
    return f"/api/v1/namespaces/{ns}/configmaps"


def _mutation(ev) -> str | None:
    return ((ev["object"] or {}).get("data") or {}).get("mutation")


def _kinds(events) -> list:
    return [(e["type"], e["object"]["metadata"]["name"], _mutation(e)) for e in events]


def _patch_cm(core, ns, name, body):
    return core.patch_namespaced_config_map(name, ns, body, _request_timeout=TIMEOUT)


def test_watch_from_specific_resource_version(core, http, ns):
    """[sig-api-machinery] Watchers should be able to start watching from a
    specific resource version [Conformance]

    A watch opened at the resourceVersion of an older change delivers exactly
    the changes after it."""
    name = "e2e-watch-test-resource-version"
    label = {"watch-this-configmap": "from-resource-version"}
    core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": label}},
                                      _request_timeout=TIMEOUT)
    first = _patch_cm(core, ns, name, {"data": {"mutation": "1"}})
    second = _patch_cm(core, ns, name, {"data": {"mutation": "2"}})
    core.delete_namespaced_config_map(name, ns, _request_timeout=TIMEOUT)

    with Watcher(http, _cm_path(ns), labelSelector="watch-this-configmap=from-resource-version",
                 resourceVersion=first.metadata.resource_version) as w:
        events = w.take(2)
        assert _kinds(events) == [("MODIFIED", name, "2"), ("DELETED", name, "2")], \
            summarize(events)
        assert events[0]["object"]["metadata"]["resourceVersion"] == \
            second.metadata.resource_version
        w.expect_quiet(0.5)


def test_watch_restart_from_last_observed_version(core, http, ns):
    """[sig-api-machinery] Watchers should be able to restart watching from the
    last resource version observed by the previous watch [Conformance]"""
    name = "e2e-watch-test-watch-closed"
    selector = "watch-this-configmap=watch-closed-and-restarted"
    labels = {"watch-this-configmap": "watch-closed-and-restarted"}
    with Watcher(http, _cm_path(ns), labelSelector=selector) as w1:
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}},
                                          _request_timeout=TIMEOUT)
        _patch_cm(core, ns, name, {"data": {"mutation": "1"}})
        seen = w1.take(2)
        assert _kinds(seen) == [("ADDED", name, None), ("MODIFIED", name, "1")], \
            summarize(seen)
    last_rv = seen[-1]["object"]["metadata"]["resourceVersion"]

    # Changes made while no watch is open.
    _patch_cm(core, ns, name, {"data": {"mutation": "2"}})
    _patch_cm(core, ns, name, {"data": {"mutation": "3"}})
    core.delete_namespaced_config_map(name, ns, _request_timeout=TIMEOUT)

    with Watcher(http, _cm_path(ns), labelSelector=selector, resourceVersion=last_rv) as w2:
        events = w2.take(3)
        assert _kinds(events) == [("MODIFIED", name, "2"), ("MODIFIED", name, "3"),
                                  ("DELETED", name, "3")], summarize(events)
        w2.expect_quiet(0.5)


def test_watch_several_watchers_with_label_selectors(core, http, ns):
    """[sig-api-machinery] Watchers should observe add, update, and delete watch
    notifications on configmaps [Conformance]

    Watchers on label A, on label B and on A-or-B each see exactly the
    changes to the objects their selector matches."""
    key = "watch-this-configmap"
    wa = Watcher(http, _cm_path(ns), labelSelector=f"{key}=multiple-watchers-A")
    wb = Watcher(http, _cm_path(ns), labelSelector=f"{key}=multiple-watchers-B")
    wab = Watcher(http, _cm_path(ns),
                  labelSelector=f"{key} in (multiple-watchers-A,multiple-watchers-B)")
    try:
        a, b = "e2e-watch-test-configmap-a", "e2e-watch-test-configmap-b"
        core.create_namespaced_config_map(
            ns, {"metadata": {"name": a, "labels": {key: "multiple-watchers-A"}}},
            _request_timeout=TIMEOUT)
        _patch_cm(core, ns, a, {"data": {"mutation": "1"}})
        _patch_cm(core, ns, a, {"data": {"mutation": "2"}})
        core.delete_namespaced_config_map(a, ns, _request_timeout=TIMEOUT)
        core.create_namespaced_config_map(
            ns, {"metadata": {"name": b, "labels": {key: "multiple-watchers-B"}}},
            _request_timeout=TIMEOUT)
        core.delete_namespaced_config_map(b, ns, _request_timeout=TIMEOUT)

        want_a = [("ADDED", a, None), ("MODIFIED", a, "1"), ("MODIFIED", a, "2"),
                  ("DELETED", a, "2")]
        want_b = [("ADDED", b, None), ("DELETED", b, None)]
        assert _kinds(wa.take(4)) == want_a, summarize(wa.events)
        assert _kinds(wb.take(2)) == want_b, summarize(wb.events)
        assert _kinds(wab.take(6)) == want_a + want_b, summarize(wab.events)
        for w in (wa, wb, wab):
            w.expect_quiet(0.3)
    finally:
        for w in (wa, wb, wab):
            w.close()


def test_watch_object_leaving_selector_is_deleted(core, http, ns):
    """[sig-api-machinery] Watchers should observe an object deletion if it stops
    meeting the requirements of the selector [Conformance]"""
    name = "e2e-watch-test-label-changed"
    key, value = "watch-this-configmap", "label-changed-and-restored"
    with Watcher(http, _cm_path(ns), labelSelector=f"{key}={value}") as w:
        core.create_namespaced_config_map(
            ns, {"metadata": {"name": name, "labels": {key: value}}}, _request_timeout=TIMEOUT)
        _patch_cm(core, ns, name, {"data": {"mutation": "1"}})
        _patch_cm(core, ns, name, {"metadata": {"labels": {key: "wrong-value"}}})
        got = w.take(3)
        assert _kinds(got) == [("ADDED", name, None), ("MODIFIED", name, "1"),
                               ("DELETED", name, "1")], summarize(got)

        # Not observed while the label does not match.
        _patch_cm(core, ns, name, {"data": {"mutation": "2"}})
        w.expect_quiet(0.5)

        _patch_cm(core, ns, name, {"metadata": {"labels": {key: value}}})
        _patch_cm(core, ns, name, {"data": {"mutation": "3"}})
        core.delete_namespaced_config_map(name, ns, _request_timeout=TIMEOUT)
        got = w.take(3)
        assert _kinds(got) == [("ADDED", name, "2"), ("MODIFIED", name, "3"),
                               ("DELETED", name, "3")], summarize(got)
        w.expect_quiet(0.3)


def test_watch_concurrent_watchers_see_same_order(core, http, ns):
    """[sig-api-machinery] Watchers should receive events on concurrent watches
    in same order [Conformance]

    While a background writer creates, updates and deletes ConfigMaps, a
    watch is started at the resourceVersion of each event a first watch
    delivers; every watch then delivers the same events in the same order."""
    selector = "watch-this-configmap=concurrent"
    labels = {"watch-this-configmap": "concurrent"}
    start_rv = core.list_namespaced_config_map(
        ns, label_selector=selector, _request_timeout=TIMEOUT).metadata.resource_version

    rng = random.Random(1337)
    errors = []

    def produce():
        try:
            live = set()
            for i in range(60):
                n = f"cm-{rng.randrange(6)}"
                if n not in live:
                    core.create_namespaced_config_map(
                        ns, {"metadata": {"name": n, "labels": labels}},
                        _request_timeout=TIMEOUT)
                    live.add(n)
                elif rng.random() < 0.6:
                    _patch_cm(core, ns, n, {"data": {"mutation": str(i)}})
                else:
                    core.delete_namespaced_config_map(n, ns, _request_timeout=TIMEOUT)
                    live.discard(n)
                time.sleep(0.005)
        except Exception as e:  # reported by the test thread
            errors.append(e)

    first = Watcher(http, _cm_path(ns), labelSelector=selector, resourceVersion=start_rv)
    others = []
    writer = threading.Thread(target=produce)
    writer.start()
    try:
        # One more watch from the resourceVersion of each of the first events.
        for _ in range(12):
            ev = first.next()
            others.append(Watcher(http, _cm_path(ns), labelSelector=selector,
                                  resourceVersion=ev["object"]["metadata"]["resourceVersion"]))
        writer.join(timeout=60)
        assert not errors, errors
        # The final write is a create: its answer carries its resourceVersion
        # (a delete may answer with a Status that has none).
        final = core.create_namespaced_config_map(
            ns, {"metadata": {"name": "cm-final", "labels": labels}},
            _request_timeout=TIMEOUT).metadata.resource_version

        def until_final(w):
            evs = list(w.events)
            while not evs or evs[-1]["object"]["metadata"]["resourceVersion"] != final:
                evs.append(w.next())
            return [(e["type"], e["object"]["metadata"]["name"],
                     e["object"]["metadata"]["resourceVersion"]) for e in evs]

        reference = until_final(first)
        assert len(reference) == 61, reference
        for i, w in enumerate(others):
            assert until_final(w) == reference[i + 1:], f"watch #{i + 1} ({w.desc})"
    finally:
        writer.join(timeout=60)
        first.close()
        for w in others:
            w.close()


# ---------------------------------------------------------------------------
# API chunking (test/e2e/apimachinery/chunking.go)
# ---------------------------------------------------------------------------

def _create_templates(core, ns, n):
    def make(i):
        core.create_namespaced_pod_template(ns, {
            "metadata": {"name": f"template-{i:04d}"},
            "template": {"spec": {"containers": [{"name": "test", "image": "test2"}]}},
        }, _request_timeout=TIMEOUT)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(n)))


def _check_remaining(page, found_before, total):
    """remainingItemCount counts exactly what later pages hold; absent on the last."""
    rem = page.metadata.remaining_item_count
    if page.metadata._continue:
        assert rem is not None, page.metadata
        assert rem + len(page.items) + found_before == total, page.metadata
    else:
        assert rem is None, page.metadata


def test_chunking_returns_every_object_once(core, ns):
    """[sig-api-machinery] Servers with support for API chunking should return
    chunks of results for list calls [Conformance]"""
    total = 60
    _create_templates(core, ns, total)
    rng = random.Random(7)
    for _ in range(3):
        found, token, first_rv = 0, None, None
        while True:
            limit = rng.randint(1, total // 6)
            kw = {"limit": limit, "_request_timeout": TIMEOUT}
            if token:
                kw["_continue"] = token
            page = core.list_namespaced_pod_template(ns, **kw)
            assert len(page.items) <= limit
            first_rv = first_rv or page.metadata.resource_version
            assert page.metadata.resource_version == first_rv, \
                "every page of one list has the first page's resourceVersion"
            _check_remaining(page, found, total)
            for item in page.items:
                assert item.metadata.name == f"template-{found:04d}", names_of(page.items)
                found += 1
            token = page.metadata._continue
            if not token:
                break
        assert found == total

    everything = core.list_namespaced_pod_template(ns, limit=total + 1,
                                                   _request_timeout=TIMEOUT)
    assert len(everything.items) == total
    assert not everything.metadata._continue


def _churn(http, ns, writes, threads=12):
    """`writes` small updates, spread over one ConfigMap per thread (concurrent
    patches of one object would race for its resourceVersion)."""
    def work(t):
        name = f"churn-{t}"
        path = f"{_cm_path(ns)}/{name}"
        http.request("POST", _cm_path(ns), {"metadata": {"name": name}})
        for i in range(t, writes, threads):
            r = http.request("PATCH", path, {"data": {"i": str(i)}},
                             content_type="application/merge-patch+json")
            assert r.status == 200, r.describe()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))


def test_chunking_continue_after_compaction(core, http, ns, cluster):
    """[sig-api-machinery] Servers with support for API chunking should support
    continue listing from the last key if the original version has been
    compacted away, though the list is inconsistent [Slow] [Conformance]

    kedge keeps the last 10,000 changes; more than that many writes between
    two pages make the first page's revision "compacted"."""
    if not cluster.is_kedge:
        pytest.skip("forcing compaction needs the cluster's cooperation: on kedge more than "
                    "10,000 writes do it; other clusters compact on their own schedule")
    total, limit = 40, 10
    _create_templates(core, ns, total)
    page = core.list_namespaced_pod_template(ns, limit=limit, _request_timeout=TIMEOUT)
    first_token, first_rv = page.metadata._continue, page.metadata.resource_version
    assert first_token
    _check_remaining(page, 0, total)

    path = f"/api/v1/namespaces/{ns}/podtemplates"
    _churn(http, ns, 10_100)
    for _ in range(10):
        r = http.get(path, query={"limit": limit, "continue": first_token})
        if r.status != 200:
            break
        _churn(http, ns, 500)  # other writers' events may not count; add more
    assert r.status == 410, "continue token still accepted after >10,000 writes:\n" + \
        r.describe()
    status = status_body(r)
    assert status["reason"] == "Expired" and status["code"] == 410, status
    inconsistent = (status.get("metadata") or {}).get("continue")
    assert inconsistent, f"410 without an inconsistent continue token: {status}"

    page = core.list_namespaced_pod_template(ns, limit=limit, _continue=inconsistent,
                                             _request_timeout=TIMEOUT)
    assert page.metadata.resource_version != first_rv
    assert len(page.items) == limit
    found = limit
    _check_remaining(page, found, total)
    for item in page.items:
        assert item.metadata.name == f"template-{found:04d}", names_of(page.items)
        found += 1

    last_rv = page.metadata.resource_version
    token = page.metadata._continue
    while token:
        page = core.list_namespaced_pod_template(ns, limit=limit, _continue=token,
                                                 _request_timeout=TIMEOUT)
        assert len(page.items) <= limit
        assert page.metadata.resource_version == last_rv
        _check_remaining(page, found, total)
        for item in page.items:
            assert item.metadata.name == f"template-{found:04d}", names_of(page.items)
            found += 1
        token = page.metadata._continue
    assert found == total


# ---------------------------------------------------------------------------
# Namespaces (test/e2e/apimachinery/namespace.go)
# ---------------------------------------------------------------------------

def _wait_namespace_gone(core, name, timeout=60):
    wait_for(f"namespace {name} to be deleted",
             lambda: gone(core.read_namespace, name), timeout=timeout, interval=0.2)


def test_namespace_deletion_removes_pods(core, cluster):
    """[sig-api-machinery] Namespaces [Serial] should ensure that all pods are
    removed when a namespace is deleted [Conformance]"""
    name = f"conf-api-nsdel-pods-{cluster.suffix}"
    core.create_namespace({"metadata": {"name": name}}, _request_timeout=TIMEOUT)
    try:
        core.create_namespaced_pod(name, {"metadata": {"name": "test-pod"},
                                          "spec": pod_spec()}, _request_timeout=TIMEOUT)
        core.delete_namespace(name, _request_timeout=TIMEOUT)
        _wait_namespace_gone(core, name)
        core.create_namespace({"metadata": {"name": name}}, _request_timeout=TIMEOUT)
        assert core.list_namespaced_pod(name, _request_timeout=TIMEOUT).items == []
    finally:
        _delete_namespace(core, name)


def test_namespace_deletion_removes_services(core, cluster):
    """[sig-api-machinery] Namespaces [Serial] should ensure that all services
    are removed when a namespace is deleted [Conformance]

    ConfigMaps and Secrets are checked the same way."""
    name = f"conf-api-nsdel-svc-{cluster.suffix}"
    core.create_namespace({"metadata": {"name": name}}, _request_timeout=TIMEOUT)
    try:
        core.create_namespaced_service(name, {
            "metadata": {"name": "test-service"},
            "spec": {"selector": {"foo": "bar"}, "ports": [{"port": 80, "targetPort": 80}]},
        }, _request_timeout=TIMEOUT)
        core.create_namespaced_config_map(name, {"metadata": {"name": "test-configmap"},
                                                 "data": {"a": "b"}}, _request_timeout=TIMEOUT)
        core.create_namespaced_secret(name, {"metadata": {"name": "test-secret"},
                                             "stringData": {"a": "b"}}, _request_timeout=TIMEOUT)
        core.delete_namespace(name, _request_timeout=TIMEOUT)
        _wait_namespace_gone(core, name)
        core.create_namespace({"metadata": {"name": name}}, _request_timeout=TIMEOUT)
        assert core.list_namespaced_service(name, _request_timeout=TIMEOUT).items == []
        assert "test-configmap" not in names_of(
            core.list_namespaced_config_map(name, _request_timeout=TIMEOUT).items)
        assert "test-secret" not in names_of(
            core.list_namespaced_secret(name, _request_timeout=TIMEOUT).items)
    finally:
        _delete_namespace(core, name)


def test_namespace_patch(core, ns):
    """[sig-api-machinery] Namespaces [Serial] should patch a Namespace [Conformance]"""
    core.patch_namespace(ns, {"metadata": {"labels": {"testLabel": "testValue"}}},
                         _request_timeout=TIMEOUT)
    got = core.read_namespace(ns, _request_timeout=TIMEOUT)
    assert got.metadata.labels.get("testLabel") == "testValue", got.metadata.labels


def test_namespace_update(core, ns):
    """[sig-api-machinery] Namespaces [Serial] should apply an update to a
    Namespace [Conformance]"""
    got = core.read_namespace(ns, _request_timeout=TIMEOUT)
    got.metadata.labels = dict(got.metadata.labels or {}, **{"e2e-update": "updated"})
    updated = core.replace_namespace(ns, got, _request_timeout=TIMEOUT)
    assert updated.metadata.labels["e2e-update"] == "updated"
    assert core.read_namespace(ns, _request_timeout=TIMEOUT).metadata.labels[
        "e2e-update"] == "updated"


def test_namespace_status(core, http, ns):
    """[sig-api-machinery] Namespaces [Serial] should apply changes to a
    namespace status [Conformance]"""
    status = core.read_namespace_status(ns, _request_timeout=TIMEOUT).status
    assert status.phase == "Active"

    patched = http.ok("PATCH", f"/api/v1/namespaces/{ns}/status", {"status": {"conditions": [
        {"type": "StatusPatch", "status": "True", "reason": "E2E",
         "message": "Patched by an e2e test"}]}}, content_type="application/merge-patch+json")
    conds = {c["type"]: c for c in patched["status"].get("conditions") or []}
    assert conds["StatusPatch"]["message"] == "Patched by an e2e test", patched["status"]
    assert patched["status"]["phase"] == "Active"

    current = core.read_namespace_status(ns, _request_timeout=TIMEOUT)
    current.status.conditions = (current.status.conditions or []) + [
        client.V1NamespaceCondition(type="StatusUpdate", status="True", reason="E2E",
                                    message="Updated by an e2e test")]
    updated = core.replace_namespace_status(ns, current, _request_timeout=TIMEOUT)
    conds = {c.type: c for c in updated.status.conditions}
    assert conds["StatusUpdate"].message == "Updated by an e2e test"
    assert "StatusPatch" in conds
    # A status write does not change the spec; a main-resource write does
    # not change the status.
    assert updated.spec.finalizers == current.spec.finalizers
    got = core.read_namespace(ns, _request_timeout=TIMEOUT)
    got.status.conditions = []
    after = core.replace_namespace(ns, got, _request_timeout=TIMEOUT)
    assert {c.type for c in after.status.conditions or []} >= {"StatusPatch", "StatusUpdate"}


FAKE_FINALIZER = "e2e.example.com/fakeFinalizer"


def test_namespace_finalize_subresource(core, ns):
    """[sig-api-machinery] Namespaces [Serial] should apply a finalizer to a
    Namespace [Conformance]

    spec.finalizers changes only through /finalize; a plain update leaves it
    as it was."""
    got = core.read_namespace(ns, _request_timeout=TIMEOUT)
    assert "kubernetes" in (got.spec.finalizers or []), got.spec

    got.spec.finalizers = list(got.spec.finalizers) + [FAKE_FINALIZER]
    finalized = core.replace_namespace_finalize(ns, got, _request_timeout=TIMEOUT)
    assert FAKE_FINALIZER in finalized.spec.finalizers
    assert FAKE_FINALIZER in core.read_namespace(ns, _request_timeout=TIMEOUT).spec.finalizers

    # A plain update cannot drop it.
    got = core.read_namespace(ns, _request_timeout=TIMEOUT)
    got.spec.finalizers = ["kubernetes"]
    assert FAKE_FINALIZER in core.replace_namespace(ns, got,
                                                    _request_timeout=TIMEOUT).spec.finalizers

    got = core.read_namespace(ns, _request_timeout=TIMEOUT)
    got.spec.finalizers = [f for f in got.spec.finalizers if f != FAKE_FINALIZER]
    finalized = core.replace_namespace_finalize(ns, got, _request_timeout=TIMEOUT)
    assert FAKE_FINALIZER not in (finalized.spec.finalizers or [])
    assert FAKE_FINALIZER not in (core.read_namespace(ns, _request_timeout=TIMEOUT)
                                  .spec.finalizers or [])


def test_namespace_finalizer_holds_deletion(core, cluster):
    """[sig-api-machinery] Namespaces [Serial] should apply a finalizer to a
    Namespace [Conformance], and what the finalizer means: a deleted namespace
    is Terminating until every spec.finalizer is gone; the namespace
    lifecycle removes only its own (`kubernetes`)."""
    name = f"conf-api-nsfin-{cluster.suffix}"
    core.create_namespace({"metadata": {"name": name}}, _request_timeout=TIMEOUT)
    try:
        got = core.read_namespace(name, _request_timeout=TIMEOUT)
        got.spec.finalizers = list(got.spec.finalizers or []) + [FAKE_FINALIZER]
        core.replace_namespace_finalize(name, got, _request_timeout=TIMEOUT)
        core.create_namespaced_config_map(name, {"metadata": {"name": "content"}},
                                          _request_timeout=TIMEOUT)

        core.delete_namespace(name, _request_timeout=TIMEOUT)
        wait_for("the namespace lifecycle to remove its own finalizer",
                 lambda: core.read_namespace(name, _request_timeout=TIMEOUT)
                 .spec.finalizers == [FAKE_FINALIZER], timeout=60, interval=0.2)
        held = core.read_namespace(name, _request_timeout=TIMEOUT)
        assert held.status.phase == "Terminating"
        assert held.metadata.deletion_timestamp is not None
        assert "content" not in names_of(
            core.list_namespaced_config_map(name, _request_timeout=TIMEOUT).items)

        held.spec.finalizers = []
        core.replace_namespace_finalize(name, held, _request_timeout=TIMEOUT)
        _wait_namespace_gone(core, name, timeout=30)
    finally:
        try:
            got = core.read_namespace(name, _request_timeout=TIMEOUT)
            if got.spec.finalizers and FAKE_FINALIZER in got.spec.finalizers:
                got.spec.finalizers = [f for f in got.spec.finalizers if f != FAKE_FINALIZER]
                core.replace_namespace_finalize(name, got, _request_timeout=TIMEOUT)
        except ApiException:
            pass
        _delete_namespace(core, name)


# ---------------------------------------------------------------------------
# Garbage collector (test/e2e/apimachinery/garbage_collector.go), with
# ConfigMaps as owners and dependents: no workload controller is needed.
# ---------------------------------------------------------------------------

def _owner_ref(obj, block=None) -> dict:
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": obj.metadata.name,
           "uid": obj.metadata.uid}
    if block is not None:
        ref["blockOwnerDeletion"] = block
    return ref


def _cm(core, ns, name, owners=(), finalizers=None):
    meta = {"name": name}
    if owners:
        meta["ownerReferences"] = list(owners)
    if finalizers:
        meta["finalizers"] = finalizers
    return core.create_namespaced_config_map(ns, {"metadata": meta, "data": {"x": name}},
                                             _request_timeout=TIMEOUT)


def _cm_gone(core, ns, name):
    return gone(core.read_namespaced_config_map, name, ns)


def _owner_uids(core, ns, name):
    obj = core.read_namespaced_config_map(name, ns, _request_timeout=TIMEOUT)
    return {r.uid for r in obj.metadata.owner_references or []}


def test_gc_background_deletes_dependents(core, ns):
    """[sig-api-machinery] Garbage collector should delete pods created by rc
    when not orphaning [Conformance] (and "should delete RS created by
    deployment when not orphaning"): propagationPolicy=Background."""
    owner = _cm(core, ns, "owner")
    deps = [_cm(core, ns, f"dependent-{i}", [_owner_ref(owner)]) for i in range(3)]
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Background",
                                      _request_timeout=TIMEOUT)
    assert _cm_gone(core, ns, "owner"), "background deletion removes the owner at once"
    for d in deps:
        wait_for(f"dependent {d.metadata.name} to be collected",
                 lambda d=d: _cm_gone(core, ns, d.metadata.name))


def test_gc_orphan_keeps_dependents(core, ns):
    """[sig-api-machinery] Garbage collector should orphan pods created by rc if
    delete options say so [Conformance] (and "should orphan RS created by
    deployment when deleteOptions.PropagationPolicy is Orphan")."""
    owner = _cm(core, ns, "owner")
    deps = [_cm(core, ns, f"dependent-{i}", [_owner_ref(owner, block=True)]) for i in range(3)]
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Orphan",
                                      _request_timeout=TIMEOUT)
    wait_for("the orphaned owner to go", lambda: _cm_gone(core, ns, "owner"))
    for d in deps:
        wait_for(f"{d.metadata.name} to lose its owner reference",
                 lambda d=d: owner.metadata.uid not in _owner_uids(core, ns, d.metadata.name))
    time.sleep(0.5)  # the collector had its chance to (wrongly) delete them
    for d in deps:
        obj = core.read_namespaced_config_map(d.metadata.name, ns, _request_timeout=TIMEOUT)
        assert obj.metadata.deletion_timestamp is None


HOLD = "conformance.kedge.io/hold"


def _drop_finalizer(core, ns, name, finalizer):
    for _ in range(10):
        obj = core.read_namespaced_config_map(name, ns, _request_timeout=TIMEOUT)
        obj.metadata.finalizers = [f for f in obj.metadata.finalizers or [] if f != finalizer]
        try:
            core.replace_namespaced_config_map(name, ns, obj, _request_timeout=TIMEOUT)
            return
        except ApiException as e:
            if e.status != 409:
                raise
    raise AssertionError(f"could not remove finalizer {finalizer} from {name}")


def test_gc_foreground_waits_for_blocking_dependents(core, ns):
    """[sig-api-machinery] Garbage collector should keep the rc around until all
    its pods are deleted if the deleteOptions says so [Conformance]

    With propagationPolicy=Foreground the owner stays (deletionTimestamp and
    the foregroundDeletion finalizer) until its blockOwnerDeletion
    dependents are gone. A finalizer on one dependent holds that moment."""
    owner = _cm(core, ns, "owner")
    _cm(core, ns, "held", [_owner_ref(owner, block=True)], finalizers=[HOLD])
    _cm(core, ns, "plain", [_owner_ref(owner, block=True)])
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Foreground",
                                      _request_timeout=TIMEOUT)
    got = core.read_namespaced_config_map("owner", ns, _request_timeout=TIMEOUT)
    assert got.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in (got.metadata.finalizers or []), got.metadata

    wait_for("the unheld dependent to be collected", lambda: _cm_gone(core, ns, "plain"))
    wait_for("the held dependent to be marked deleted",
             lambda: core.read_namespaced_config_map("held", ns, _request_timeout=TIMEOUT)
             .metadata.deletion_timestamp is not None)
    time.sleep(0.3)
    assert not _cm_gone(core, ns, "owner"), "owner went before a blocking dependent"

    _drop_finalizer(core, ns, "held", HOLD)
    wait_for("the held dependent to go", lambda: _cm_gone(core, ns, "held"))
    wait_for("the owner to go once its dependents are gone", lambda: _cm_gone(core, ns, "owner"))


def test_gc_dependent_with_two_owners_survives(core, ns):
    """[sig-api-machinery] Garbage collector should not delete dependents that
    have both valid owner and owner that's waiting for dependents to be
    deleted [Conformance]"""
    owner1 = _cm(core, ns, "owner-1")
    owner2 = _cm(core, ns, "owner-2")
    only1 = [_cm(core, ns, f"only-1-{i}", [_owner_ref(owner1, block=True)]) for i in range(2)]
    both = [_cm(core, ns, f"both-{i}", [_owner_ref(owner1, block=True), _owner_ref(owner2)])
            for i in range(2)]
    core.delete_namespaced_config_map("owner-1", ns, propagation_policy="Foreground",
                                      _request_timeout=TIMEOUT)
    wait_for("owner-1 to go", lambda: _cm_gone(core, ns, "owner-1"))
    for d in only1:
        assert _cm_gone(core, ns, d.metadata.name), "owner-1 went before its dependent"
    for d in both:
        obj = core.read_namespaced_config_map(d.metadata.name, ns, _request_timeout=TIMEOUT)
        assert obj.metadata.deletion_timestamp is None, obj.metadata
        wait_for(f"{d.metadata.name} to drop its reference to the deleted owner",
                 lambda d=d: _owner_uids(core, ns, d.metadata.name) == {owner2.metadata.uid})

    # The last owner goes: so do they.
    core.delete_namespaced_config_map("owner-2", ns, _request_timeout=TIMEOUT)
    for d in both:
        wait_for(f"{d.metadata.name} to be collected",
                 lambda d=d: _cm_gone(core, ns, d.metadata.name))


def test_gc_dependency_cycle(core, ns):
    """[sig-api-machinery] Garbage collector should not be blocked by dependency
    circle [Conformance]"""
    objs = [_cm(core, ns, f"cycle-{i}") for i in range(3)]
    for i, obj in enumerate(objs):
        owner = objs[(i - 1) % 3]  # 0 <- 2, 1 <- 0, 2 <- 1
        core.patch_namespaced_config_map(
            obj.metadata.name, ns,
            {"metadata": {"ownerReferences": [_owner_ref(owner, block=True)]}},
            _request_timeout=TIMEOUT)
    core.delete_namespaced_config_map("cycle-0", ns, _request_timeout=TIMEOUT)
    for obj in objs:
        wait_for(f"{obj.metadata.name} to be collected",
                 lambda o=obj: _cm_gone(core, ns, o.metadata.name))


# ---------------------------------------------------------------------------
# Lease (test/e2e/common/node/lease.go)
# ---------------------------------------------------------------------------

def _same_time(a: datetime, b: datetime) -> bool:
    return a is not None and b is not None and abs((a - b).total_seconds()) < 1e-6


def test_lease_lifecycle(coord, ns):
    """[sig-node] Lease lease API should be available [Conformance]"""
    t0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    spec = {"holderIdentity": "holder", "leaseDurationSeconds": 30,
            "acquireTime": micro(t0), "renewTime": micro(t0 + timedelta(seconds=5)),
            "leaseTransitions": 0}
    coord.create_namespaced_lease(ns, {"metadata": {"name": "lease"}, "spec": spec},
                                  _request_timeout=TIMEOUT)
    got = coord.read_namespaced_lease("lease", ns, _request_timeout=TIMEOUT)
    assert got.spec.holder_identity == "holder" and got.spec.lease_duration_seconds == 30
    assert _same_time(got.spec.acquire_time, t0), got.spec
    assert _same_time(got.spec.renew_time, t0 + timedelta(seconds=5)), got.spec
    assert got.spec.lease_transitions == 0

    # Update (the client sends its own serialization of the times).
    got.spec.holder_identity = "holder2"
    got.spec.lease_duration_seconds = 60
    got.spec.acquire_time = t0 + timedelta(seconds=10)
    got.spec.renew_time = t0 + timedelta(seconds=11)
    got.spec.lease_transitions = 1
    coord.replace_namespaced_lease("lease", ns, got, _request_timeout=TIMEOUT)
    got = coord.read_namespaced_lease("lease", ns, _request_timeout=TIMEOUT)
    assert (got.spec.holder_identity, got.spec.lease_duration_seconds,
            got.spec.lease_transitions) == ("holder2", 60, 1)
    assert _same_time(got.spec.acquire_time, t0 + timedelta(seconds=10)), got.spec
    assert _same_time(got.spec.renew_time, t0 + timedelta(seconds=11)), got.spec

    coord.patch_namespaced_lease("lease", ns, {"spec": {
        "holderIdentity": "anotherholder", "leaseDurationSeconds": 90,
        "renewTime": micro(t0 + timedelta(seconds=20)), "leaseTransitions": 2}},
        _request_timeout=TIMEOUT)
    got = coord.read_namespaced_lease("lease", ns, _request_timeout=TIMEOUT)
    assert (got.spec.holder_identity, got.spec.lease_duration_seconds,
            got.spec.lease_transitions) == ("anotherholder", 90, 2)
    assert _same_time(got.spec.renew_time, t0 + timedelta(seconds=20)), got.spec
    assert _same_time(got.spec.acquire_time, t0 + timedelta(seconds=10)), got.spec

    coord.create_namespaced_lease(ns, {"metadata": {"name": "lease2",
                                                    "labels": {"deletecollection": "true"}},
                                       "spec": spec}, _request_timeout=TIMEOUT)
    listed = coord.list_namespaced_lease(ns, _request_timeout=TIMEOUT)
    assert sorted(names_of(listed.items)) == ["lease", "lease2"]

    coord.delete_collection_namespaced_lease(ns, label_selector="deletecollection=true",
                                             _request_timeout=TIMEOUT)
    listed = coord.list_namespaced_lease(ns, _request_timeout=TIMEOUT)
    assert names_of(listed.items) == ["lease"]

    coord.delete_namespaced_lease("lease", ns, _request_timeout=TIMEOUT)
    assert api_error(coord.read_namespaced_lease, "lease", ns).status == 404


# ---------------------------------------------------------------------------
# PodTemplates (test/e2e/common/node/podtemplates.go)
# ---------------------------------------------------------------------------

def _template_body(name, labels=None, annotations=None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}


def test_podtemplate_lifecycle(core, ns):
    """[sig-node] PodTemplates should run the lifecycle of PodTemplates [Conformance]"""
    core.create_namespaced_pod_template(
        ns, _template_body("nginx-pod-template", {"podtemplate-static": "true"}),
        _request_timeout=TIMEOUT)
    listed = core.list_namespaced_pod_template(ns, label_selector="podtemplate-static=true",
                                               _request_timeout=TIMEOUT)
    assert names_of(listed.items) == ["nginx-pod-template"]

    core.patch_namespaced_pod_template("nginx-pod-template", ns,
                                       {"metadata": {"labels": {"podtemplate": "patched"}}},
                                       _request_timeout=TIMEOUT)
    got = core.read_namespaced_pod_template("nginx-pod-template", ns, _request_timeout=TIMEOUT)
    assert got.metadata.labels == {"podtemplate-static": "true", "podtemplate": "patched"}

    core.delete_namespaced_pod_template("nginx-pod-template", ns, _request_timeout=TIMEOUT)
    listed = core.list_namespaced_pod_template(ns, label_selector="podtemplate-static=true",
                                               _request_timeout=TIMEOUT)
    assert listed.items == []


def test_podtemplate_replace(core, ns):
    """[sig-node] PodTemplates should replace a pod template [Conformance]"""
    core.create_namespaced_pod_template(ns, _template_body("podtemplate-replace"),
                                        _request_timeout=TIMEOUT)
    got = core.read_namespaced_pod_template("podtemplate-replace", ns,
                                            _request_timeout=TIMEOUT)
    got.metadata.annotations = {"updated": "true"}
    replaced = core.replace_namespaced_pod_template("podtemplate-replace", ns, got,
                                                    _request_timeout=TIMEOUT)
    assert replaced.metadata.annotations == {"updated": "true"}
    assert core.read_namespaced_pod_template("podtemplate-replace", ns,
                                             _request_timeout=TIMEOUT).metadata.annotations == \
        {"updated": "true"}


def test_podtemplate_deletecollection(core, ns):
    """[sig-node] PodTemplates should delete a collection of pod templates [Conformance]"""
    for i in range(1, 4):
        core.create_namespaced_pod_template(
            ns, _template_body(f"podtemplate-{i}", {"podtemplate-set": "true"}),
            _request_timeout=TIMEOUT)
    core.create_namespaced_pod_template(ns, _template_body("bystander"),
                                        _request_timeout=TIMEOUT)
    listed = core.list_namespaced_pod_template(ns, label_selector="podtemplate-set=true",
                                               _request_timeout=TIMEOUT)
    assert sorted(names_of(listed.items)) == ["podtemplate-1", "podtemplate-2", "podtemplate-3"]
    core.delete_collection_namespaced_pod_template(ns, label_selector="podtemplate-set=true",
                                                   _request_timeout=TIMEOUT)
    assert core.list_namespaced_pod_template(ns, label_selector="podtemplate-set=true",
                                             _request_timeout=TIMEOUT).items == []
    assert names_of(core.list_namespaced_pod_template(ns, _request_timeout=TIMEOUT).items) == \
        ["bystander"]


# ---------------------------------------------------------------------------
# Events (test/e2e/instrumentation/core_events.go, events.go)
# ---------------------------------------------------------------------------

def _core_event(ns, name, labels=None, message="This is a test event") -> dict:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return {"metadata": {"name": name, "labels": labels or {}},
            "message": message, "reason": "Test", "type": "Normal", "count": 1,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": {"component": "conformance"},
            "involvedObject": {"kind": "Pod", "name": "test-pod", "namespace": ns,
                               "apiVersion": "v1"}}


def _v1_event(ns, name, labels=None, note="This is a test event") -> dict:
    return {"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": name, "labels": labels or {}},
            "eventTime": micro(datetime.now(timezone.utc)),
            "reportingController": "conformance-controller",
            "reportingInstance": "conformance-0",
            "action": "Testing", "reason": "Test", "type": "Normal", "note": note,
            "regarding": {"kind": "Pod", "name": "test-pod", "namespace": ns,
                          "apiVersion": "v1"}}


def test_core_event_lifecycle(core, http, ns):
    """[sig-instrumentation] Events should manage the lifecycle of an event
    [Conformance]"""
    core.create_namespaced_event(ns, _core_event(ns, "event-test",
                                                 {"testevent-constant": "true"}),
                                 _request_timeout=TIMEOUT)
    listed = core.list_event_for_all_namespaces(label_selector="testevent-constant=true",
                                                _request_timeout=TIMEOUT)
    assert [(e.metadata.namespace, e.metadata.name) for e in listed.items] == \
        [(ns, "event-test")]
    by_field = core.list_namespaced_event(
        ns, field_selector="involvedObject.name=test-pod,reason=Test", _request_timeout=TIMEOUT)
    assert names_of(by_field.items) == ["event-test"]
    assert core.list_namespaced_event(ns, field_selector="involvedObject.name=other",
                                      _request_timeout=TIMEOUT).items == []

    core.patch_namespaced_event("event-test", ns, {"message": "This is a test event - patched"},
                                _request_timeout=TIMEOUT)
    got = core.read_namespaced_event("event-test", ns, _request_timeout=TIMEOUT)
    assert got.message == "This is a test event - patched"
    # The same event, seen through events.k8s.io/v1 (raw: a core event has
    # no eventTime, which the typed EventsV1Event refuses to deserialize).
    other = http.ok("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events/event-test")
    assert other["metadata"]["uid"] == got.metadata.uid
    assert other["note"] == got.message
    assert other["regarding"]["name"] == "test-pod" and other["reason"] == "Test"

    observed = datetime.now(timezone.utc).replace(microsecond=250000)
    got.series = client.CoreV1EventSeries(count=100, last_observed_time=observed)
    core.replace_namespaced_event("event-test", ns, got, _request_timeout=TIMEOUT)
    got = core.read_namespaced_event("event-test", ns, _request_timeout=TIMEOUT)
    assert got.series.count == 100
    assert _same_time(got.series.last_observed_time, observed), got.series

    core.delete_namespaced_event("event-test", ns, _request_timeout=TIMEOUT)
    listed = core.list_event_for_all_namespaces(label_selector="testevent-constant=true",
                                                _request_timeout=TIMEOUT)
    assert listed.items == []


def test_core_event_deletecollection(core, ns):
    """[sig-instrumentation] Events should delete a collection of events [Conformance]"""
    for i in range(1, 4):
        core.create_namespaced_event(ns, _core_event(ns, f"test-event-{i}",
                                                     {"testevent-set": "true"}),
                                     _request_timeout=TIMEOUT)
    listed = core.list_namespaced_event(ns, label_selector="testevent-set=true",
                                        _request_timeout=TIMEOUT)
    assert len(listed.items) == 3
    core.delete_collection_namespaced_event(ns, label_selector="testevent-set=true",
                                            _request_timeout=TIMEOUT)
    assert core.list_namespaced_event(ns, label_selector="testevent-set=true",
                                      _request_timeout=TIMEOUT).items == []


def test_events_v1_lifecycle(core, events_v1, http, ns):
    """[sig-instrumentation] Events API should ensure that an event can be
    fetched, patched, deleted, and listed [Conformance]

    core/v1 sees the same event, by the same name."""
    created = events_v1.create_namespaced_event(
        ns, _v1_event(ns, "event-test", {"testevent-constant": "true"}),
        _request_timeout=TIMEOUT)
    got = events_v1.read_namespaced_event("event-test", ns, _request_timeout=TIMEOUT)
    assert got.metadata.uid == created.metadata.uid
    assert got.note == "This is a test event" and got.reporting_controller == \
        "conformance-controller"

    as_core = core.read_namespaced_event("event-test", ns, _request_timeout=TIMEOUT)
    assert as_core.metadata.uid == created.metadata.uid
    assert as_core.message == "This is a test event"
    assert as_core.involved_object.name == "test-pod"
    assert as_core.reporting_component == "conformance-controller"
    assert as_core.reason == "Test" and as_core.type == "Normal"

    # Field selectors: core's `source` falls back to reportingController;
    # events.k8s.io's reportingController is core's reportingComponent.
    by_source = core.list_namespaced_event(ns, field_selector="source=conformance-controller",
                                           _request_timeout=TIMEOUT)
    assert names_of(by_source.items) == ["event-test"]
    by_controller = events_v1.list_namespaced_event(
        ns, field_selector="reportingController=conformance-controller",
        _request_timeout=TIMEOUT)
    assert names_of(by_controller.items) == ["event-test"]

    path = f"/apis/events.k8s.io/v1/namespaces/{ns}/events/event-test"
    before = http.ok("GET", path)
    http.ok("PATCH", path, {"note": "This is a test event - patched"},
            content_type="application/strategic-merge-patch+json")
    after = http.ok("GET", path)
    assert after["note"] == "This is a test event - patched"
    for doc in (before, after):  # nothing else changed
        doc["metadata"].pop("resourceVersion")
        doc["metadata"].pop("managedFields", None)
        doc.pop("note")
    assert after == before
    got = events_v1.read_namespaced_event("event-test", ns, _request_timeout=TIMEOUT)
    assert core.read_namespaced_event("event-test", ns, _request_timeout=TIMEOUT).message == \
        "This is a test event - patched"

    observed = datetime.now(timezone.utc).replace(microsecond=500000)
    got.series = client.EventsV1EventSeries(count=100, last_observed_time=observed)
    events_v1.replace_namespaced_event("event-test", ns, got, _request_timeout=TIMEOUT)
    got = events_v1.read_namespaced_event("event-test", ns, _request_timeout=TIMEOUT)
    assert got.series.count == 100 and _same_time(got.series.last_observed_time, observed)

    listed = events_v1.list_namespaced_event(ns, field_selector="regarding.name=test-pod",
                                             _request_timeout=TIMEOUT)
    assert names_of(listed.items) == ["event-test"]
    assert events_v1.list_namespaced_event(ns, field_selector="regarding.name=other",
                                           _request_timeout=TIMEOUT).items == []
    listed = events_v1.list_event_for_all_namespaces(label_selector="testevent-constant=true",
                                                     _request_timeout=TIMEOUT)
    assert [(e.metadata.namespace, e.metadata.name) for e in listed.items] == \
        [(ns, "event-test")]

    events_v1.delete_namespaced_event("event-test", ns, _request_timeout=TIMEOUT)
    assert events_v1.list_namespaced_event(ns, _request_timeout=TIMEOUT).items == []
    assert api_error(core.read_namespaced_event, "event-test", ns).status == 404


def test_events_v1_deletecollection(core, events_v1, ns):
    """[sig-instrumentation] Events API should delete a collection of events
    [Conformance]"""
    for i in range(1, 4):
        events_v1.create_namespaced_event(
            ns, _v1_event(ns, f"test-event-{i}", {"testevent-set": "true"}),
            _request_timeout=TIMEOUT)
    listed = events_v1.list_namespaced_event(ns, label_selector="testevent-set=true",
                                             _request_timeout=TIMEOUT)
    assert len(listed.items) == 3
    assert len(core.list_namespaced_event(ns, label_selector="testevent-set=true",
                                          _request_timeout=TIMEOUT).items) == 3
    events_v1.delete_collection_namespaced_event(ns, label_selector="testevent-set=true",
                                                 _request_timeout=TIMEOUT)
    assert events_v1.list_namespaced_event(ns, label_selector="testevent-set=true",
                                           _request_timeout=TIMEOUT).items == []
    assert core.list_namespaced_event(ns, label_selector="testevent-set=true",
                                      _request_timeout=TIMEOUT).items == []


# ---------------------------------------------------------------------------
# ConfigMaps and Secrets (test/e2e/common/node/configmap.go, secrets.go,
# test/e2e/common/storage/configmap_volume.go, secrets_volume.go)
# ---------------------------------------------------------------------------

def test_configmap_lifecycle(core, ns):
    """[sig-node] ConfigMap should run through a ConfigMap lifecycle [Conformance]"""
    name = "test-configmap"
    core.create_namespaced_config_map(ns, {
        "metadata": {"name": name, "labels": {"test-configmap-static": "true"}},
        "data": {"valueName": "value"}}, _request_timeout=TIMEOUT)
    core.patch_namespaced_config_map(name, ns, {
        "metadata": {"labels": {"test-configmap": "patched"}},
        "data": {"valueName": "value1"}}, _request_timeout=TIMEOUT)
    got = core.read_namespaced_config_map(name, ns, _request_timeout=TIMEOUT)
    assert got.metadata.labels == {"test-configmap-static": "true", "test-configmap": "patched"}
    assert got.data == {"valueName": "value1"}

    listed = core.list_config_map_for_all_namespaces(label_selector="test-configmap-static=true",
                                                     _request_timeout=TIMEOUT)
    mine = [c for c in listed.items if c.metadata.namespace == ns]
    assert names_of(mine) == [name] and mine[0].data == {"valueName": "value1"}
    assert all(c.metadata.labels.get("test-configmap-static") == "true" for c in listed.items)

    core.delete_collection_namespaced_config_map(ns, label_selector="test-configmap-static=true",
                                                 _request_timeout=TIMEOUT)
    assert core.list_namespaced_config_map(ns, label_selector="test-configmap-static=true",
                                           _request_timeout=TIMEOUT).items == []


def test_configmap_update(core, ns):
    """[sig-node] ConfigMap should update ConfigMap successfully [NodeConformance]
    [Conformance] (the API half of it)"""
    core.create_namespaced_config_map(ns, {"metadata": {"name": "configmap-test-upd"},
                                           "data": {"data": "value"}}, _request_timeout=TIMEOUT)
    got = core.read_namespaced_config_map("configmap-test-upd", ns, _request_timeout=TIMEOUT)
    got.data["data"] = "value-2"
    core.replace_namespaced_config_map("configmap-test-upd", ns, got, _request_timeout=TIMEOUT)
    assert core.read_namespaced_config_map("configmap-test-upd", ns,
                                           _request_timeout=TIMEOUT).data == {"data": "value-2"}


def test_configmap_empty_key_rejected(core, ns):
    """[sig-node] ConfigMap should fail to create ConfigMap with empty key [Conformance]"""
    e = api_error(core.create_namespaced_config_map, ns,
                  {"metadata": {"name": "configmap-test-emptykey"}, "data": {"": "value"}})
    assert e.status == 422 and status_body(e)["reason"] == "Invalid", e.body


def test_secret_patch(core, ns):
    """[sig-node] Secrets should patch a secret [Conformance]"""
    def b64(s):
        return base64.b64encode(s.encode()).decode()

    core.create_namespaced_secret(ns, {
        "metadata": {"name": "secret-test", "labels": {"testsecret-constant": "true"}},
        "type": "Opaque", "data": {"key": b64("value")}}, _request_timeout=TIMEOUT)
    listed = core.list_secret_for_all_namespaces(label_selector="testsecret-constant=true",
                                                 _request_timeout=TIMEOUT)
    assert [(s.metadata.namespace, s.metadata.name) for s in listed.items] == \
        [(ns, "secret-test")]

    core.patch_namespaced_secret("secret-test", ns, {
        "metadata": {"labels": {"testsecret": "true"}}, "data": {"key": b64("value1")}},
        _request_timeout=TIMEOUT)
    got = core.read_namespaced_secret("secret-test", ns, _request_timeout=TIMEOUT)
    assert base64.b64decode(got.data["key"]) == b"value1"
    assert got.metadata.labels == {"testsecret-constant": "true", "testsecret": "true"}

    core.delete_collection_namespaced_secret(ns, label_selector="testsecret-constant=true",
                                             _request_timeout=TIMEOUT)
    listed = core.list_secret_for_all_namespaces(label_selector="testsecret-constant=true",
                                                 _request_timeout=TIMEOUT)
    assert listed.items == []


def test_secret_empty_key_rejected(core, ns):
    """[sig-node] Secrets should fail to create secret due to empty secret key
    [Conformance]"""
    e = api_error(core.create_namespaced_secret, ns,
                  {"metadata": {"name": "secret-emptykey-test"},
                   "data": {"": base64.b64encode(b"value-1").decode()}})
    assert e.status == 422 and status_body(e)["reason"] == "Invalid", e.body


def _check_immutable(read, replace, delete, name, ns, data_field, new_value):
    obj = read(name, ns, _request_timeout=TIMEOUT)
    getattr(obj, data_field)["data-1"] = new_value("2")
    obj = replace(name, ns, obj, _request_timeout=TIMEOUT)  # mutable: fine

    obj.immutable = True
    obj = replace(name, ns, obj, _request_timeout=TIMEOUT)
    assert obj.immutable is True

    getattr(obj, data_field)["data-1"] = new_value("3")
    e = api_error(replace, name, ns, obj)
    assert e.status == 422, e.body
    body = status_body(e)
    assert body["reason"] == "Invalid", body
    assert "field is immutable when `immutable` is set" in body["message"], body

    obj = read(name, ns, _request_timeout=TIMEOUT)
    obj.immutable = False
    e = api_error(replace, name, ns, obj)
    assert e.status == 422 and status_body(e)["reason"] == "Invalid", e.body

    obj = read(name, ns, _request_timeout=TIMEOUT)
    obj.metadata.labels = {"label1": "value1"}
    obj = replace(name, ns, obj, _request_timeout=TIMEOUT)  # metadata stays mutable
    assert obj.metadata.labels == {"label1": "value1"}
    assert getattr(read(name, ns, _request_timeout=TIMEOUT), data_field)["data-1"] == \
        new_value("2")

    delete(name, ns, _request_timeout=TIMEOUT)
    assert gone(read, name, ns)


def test_configmap_immutable(core, ns):
    """[sig-storage] ConfigMap should be immutable if `immutable` field is set
    [Conformance]"""
    core.create_namespaced_config_map(ns, {"metadata": {"name": "immutable"},
                                           "data": {"data-1": "value-1"}},
                                      _request_timeout=TIMEOUT)
    _check_immutable(core.read_namespaced_config_map, core.replace_namespaced_config_map,
                     core.delete_namespaced_config_map, "immutable", ns, "data",
                     lambda v: f"value-{v}")


def test_secret_immutable(core, ns):
    """[sig-storage] Secrets should be immutable if `immutable` field is set
    [Conformance]"""
    def enc(v):
        return base64.b64encode(f"value-{v}".encode()).decode()
    core.create_namespaced_secret(ns, {"metadata": {"name": "immutable"},
                                       "data": {"data-1": enc("1")}}, _request_timeout=TIMEOUT)
    _check_immutable(core.read_namespaced_secret, core.replace_namespaced_secret,
                     core.delete_namespaced_secret, "immutable", ns, "data", enc)


# ---------------------------------------------------------------------------
# Server-side field validation (test/e2e/apimachinery/field_validation.go)
# ---------------------------------------------------------------------------

# Raw JSON: a duplicate key can only be sent as text.
DEPLOYMENT_UNKNOWN_AND_DUPLICATE = """{
  "apiVersion": "apps/v1",
  "kind": "Deployment",
  "metadata": {"name": "%s", "labels": {"app": "nginx"}},
  "spec": {
    "unknownField": "foo",
    "replicas": 2,
    "replicas": 3,
    "selector": {"matchLabels": {"app": "nginx"}},
    "template": {
      "metadata": {"labels": {"app": "nginx"}},
      "spec": {"nodeSelector": {"conformance.kedge.io/no-such-node": "true"},
               "containers": [{"name": "nginx", "image": "nginx:latest"}]}
    }
  }
}"""

DEPLOYMENT_UNKNOWN_META = """{
  "apiVersion": "apps/v1",
  "kind": "Deployment",
  "metadata": {"name": "my-dep", "unknownMeta": "foo", "labels": {"app": "nginx"}},
  "spec": {
    "selector": {"matchLabels": {"app": "nginx"}},
    "template": {
      "metadata": {"labels": {"app": "nginx"}},
      "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}
    }
  }
}"""


def _post_deployment(http, ns, body, validation):
    query = {"fieldManager": "field_validation_mgr"}
    if validation:
        query["fieldValidation"] = validation
    return http.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body,
                        query=query)


def test_field_validation_strict_typed_object(http, ns):
    """[sig-api-machinery] FieldValidation should detect unknown and duplicate
    fields of a typed object [Conformance]"""
    r = _post_deployment(http, ns, DEPLOYMENT_UNKNOWN_AND_DUPLICATE % "my-dep", "Strict")
    assert r.status == 400, r.describe()
    status = status_body(r)
    assert status["reason"] == "BadRequest", status
    assert 'strict decoding error: unknown field "spec.unknownField", duplicate field ' \
           '"spec.replicas"' in status["message"], status
    assert http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/my-dep").status == 404


def test_field_validation_strict_typed_object_each_problem(http, ns):
    """[sig-api-machinery] FieldValidation should detect unknown and duplicate
    fields of a typed object [Conformance], one problem at a time."""
    unknown_only = DEPLOYMENT_UNKNOWN_AND_DUPLICATE.replace('"replicas": 2,\n', "")
    r = _post_deployment(http, ns, unknown_only % "unknown-only", "Strict")
    assert r.status == 400, r.describe()
    assert 'strict decoding error: unknown field "spec.unknownField"' in \
        status_body(r)["message"], r.describe()

    duplicate_only = DEPLOYMENT_UNKNOWN_AND_DUPLICATE.replace('"unknownField": "foo",\n', "")
    r = _post_deployment(http, ns, duplicate_only % "duplicate-only", "Strict")
    assert r.status == 400, r.describe()
    assert 'strict decoding error: duplicate field "spec.replicas"' in \
        status_body(r)["message"], r.describe()
    assert http.get(f"/apis/apps/v1/namespaces/{ns}/deployments").json()["items"] == []


def test_field_validation_strict_typed_unknown_metadata(http, ns):
    """[sig-api-machinery] FieldValidation should detect unknown metadata fields
    of a typed object [Conformance]"""
    r = _post_deployment(http, ns, DEPLOYMENT_UNKNOWN_META, "Strict")
    assert r.status == 400, r.describe()
    assert 'strict decoding error: unknown field "metadata.unknownMeta"' in \
        status_body(r)["message"], r.describe()


def test_field_validation_warn_and_ignore_typed_object(http, ns):
    """The Warn and Ignore counterparts of [sig-api-machinery] FieldValidation
    should detect unknown and duplicate fields of a typed object
    [Conformance]: Warn (also the default) stores the object and names each
    problem in a `Warning` header; Ignore stores it silently. Unknown fields
    are dropped, and the last of duplicate keys wins."""
    for validation in ("Warn", None):
        name = f"warn-{(validation or 'default').lower()}"
        r = _post_deployment(http, ns, DEPLOYMENT_UNKNOWN_AND_DUPLICATE % name, validation)
        assert r.status == 201, r.describe()
        assert 'unknown field "spec.unknownField"' in r.warnings, r.describe()
        assert 'duplicate field "spec.replicas"' in r.warnings, r.describe()
        obj = r.json()
        assert "unknownField" not in obj["spec"] and obj["spec"]["replicas"] == 3, obj["spec"]

    r = _post_deployment(http, ns, DEPLOYMENT_UNKNOWN_AND_DUPLICATE % "ignore", "Ignore")
    assert r.status == 201, r.describe()
    assert not [w for w in r.warnings if "field" in w], r.describe()
    obj = http.ok("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/ignore")
    assert "unknownField" not in obj["spec"] and obj["spec"]["replicas"] == 3


CR_SCHEMA_PROPS = {
    "foo": {"type": "string"},
    "cronSpec": {"type": "string", "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"},
    "ports": {
        "type": "array",
        "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
        "x-kubernetes-list-type": "map",
        "items": {"type": "object", "required": ["containerPort", "protocol"], "properties": {
            "containerPort": {"type": "integer", "format": "int32"},
            "hostIP": {"type": "string"},
            "hostPort": {"type": "integer", "format": "int32"},
            "name": {"type": "string"},
            "protocol": {"type": "string"}}},
    },
}


def _crd_body(group, plural, kind, schema, scope="Cluster") -> dict:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope,
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                               "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": schema}}]}}


@pytest.fixture(scope="module")
def crds(apiext, http, cluster):
    """Three CRDs in a group of this session's own: `strict` has a schema that
    declares spec's fields, `embedded` preserves unknown fields in spec and
    declares an embedded object, `open` preserves everything."""
    group = f"fv{cluster.suffix}.example.com"
    schemas = {
        "strict": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": CR_SCHEMA_PROPS}}},
        "embedded": {"type": "object", "properties": {"spec": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True,
            "properties": dict(CR_SCHEMA_PROPS, template={
                "type": "object", "x-kubernetes-embedded-resource": True,
                "properties": {"metadata": {"type": "object",
                                            "properties": {"name": {"type": "string"}}},
                               "spec": {"type": "object"}}})}}},
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }
    made = {}
    for key, schema in schemas.items():
        plural, kind = f"{key}widgets", f"{key.capitalize()}Widget"
        body = _crd_body(group, plural, kind, schema)
        apiext.create_custom_resource_definition(body, _request_timeout=TIMEOUT)
        made[key] = {"group": group, "plural": plural, "kind": kind, "name": f"{plural}.{group}",
                     "path": f"/apis/{group}/v1/{plural}", "apiVersion": f"{group}/v1"}
    for key, crd in made.items():
        def established(crd=crd):
            got = apiext.read_custom_resource_definition(crd["name"], _request_timeout=TIMEOUT)
            ok = any(c.type == "Established" and c.status == "True"
                     for c in (got.status.conditions or []) if got.status)
            return ok and http.get(crd["path"]).status == 200
        wait_for(f"CRD {crd['name']} to be established and served", established)
    yield made
    for crd in made.values():
        try:
            apiext.delete_custom_resource_definition(crd["name"], _request_timeout=TIMEOUT)
        except ApiException as e:
            if e.status != 404:
                raise


def _apply(http, crd, name, yaml_body, validation="Strict"):
    return http.request("PATCH", f"{crd['path']}/{name}", yaml_body,
                        query={"fieldManager": "field_validation_mgr",
                               "fieldValidation": validation},
                        content_type="application/apply-patch+yaml")


CR_VALID_YAML = """
apiVersion: {api_version}
kind: {kind}
metadata:
  name: {name}
  finalizers:
  - test-finalizer
spec:
  foo: foo1
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP"""


def _clear_finalizers(http, crd, name):
    http.request("PATCH", f"{crd['path']}/{name}", {"metadata": {"finalizers": None}},
                 content_type="application/merge-patch+json")
    http.request("DELETE", f"{crd['path']}/{name}")


def test_field_validation_cr_valid_apply(http, crds):
    """[sig-api-machinery] FieldValidation should create/apply a valid CR for CRD
    with validation schema [Conformance]"""
    crd = crds["strict"]
    body = CR_VALID_YAML.format(api_version=crd["apiVersion"], kind=crd["kind"], name="mytest")
    r = _apply(http, crd, "mytest", body)
    try:
        assert r.status in (200, 201), r.describe()
        obj = r.json()
        assert obj["spec"]["foo"] == "foo1" and obj["spec"]["ports"][0]["containerPort"] == 80
    finally:
        _clear_finalizers(http, crd, "mytest")


def test_field_validation_cr_unknown_field_apply(http, crds):
    """[sig-api-machinery] FieldValidation should create/apply an invalid CR with
    extra properties for CRD with validation schema [Conformance]"""
    crd = crds["strict"]
    body = CR_VALID_YAML.format(api_version=crd["apiVersion"], kind=crd["kind"],
                                name="mytest-unknown").replace(
        "spec:\n", "unknownField: unknown\nspec:\n", 1)
    r = _apply(http, crd, "mytest-unknown", body)
    try:
        assert 400 <= r.status < 500, r.describe()
        assert ".unknownField: field not declared in schema" in r.text, r.describe()
    finally:
        _clear_finalizers(http, crd, "mytest-unknown")


def test_field_validation_cr_unknown_metadata_apply(http, crds, ns):
    """[sig-api-machinery] FieldValidation should detect unknown metadata fields
    in both the root and embedded object of a CR [Conformance]"""
    crd = crds["embedded"]
    body = f"""
apiVersion: {crd['apiVersion']}
kind: {crd['kind']}
metadata:
  name: mytest-meta
  unknownMeta: unknown
  finalizers:
  - test-finalizer
spec:
  template:
    apiversion: foo/v1
    kind: Sub
    metadata:
        unknownSubMeta: unknown
        name: subobject
        namespace: {ns}
  foo: foo1
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP"""
    r = _apply(http, crd, "mytest-meta", body)
    try:
        assert 400 <= r.status < 500, r.describe()
        assert (".spec.template.metadata.unknownSubMeta: field not declared in schema" in r.text
                or ".metadata.unknownMeta: field not declared in schema" in r.text), \
            r.describe()
    finally:
        _clear_finalizers(http, crd, "mytest-meta")


def test_field_validation_cr_duplicates_apply(http, crds):
    """[sig-api-machinery] FieldValidation should detect duplicates in a CR when
    preserving unknown fields [Conformance]"""
    crd = crds["embedded"]
    body = f"""
apiVersion: {crd['apiVersion']}
kind: {crd['kind']}
metadata:
  name: mytest-dup
  finalizers:
  - test-finalizer
spec:
  unknown: uk1
  foo: foo1
  foo: foo2
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP"""
    r = _apply(http, crd, "mytest-dup", body)
    try:
        assert 400 <= r.status < 500, r.describe()
        assert 'line 11: key \\"foo\\" already set in map' in r.text, r.describe()
    finally:
        _clear_finalizers(http, crd, "mytest-dup")


def test_field_validation_cr_without_schema_apply(http, crds):
    """[sig-api-machinery] FieldValidation should create/apply a CR with unknown
    fields for CRD with no validation schema [Conformance]"""
    crd = crds["open"]
    body = CR_VALID_YAML.format(api_version=crd["apiVersion"], kind=crd["kind"],
                                name="mytest-open").replace("foo: foo1", "unknown: uk1")
    r = _apply(http, crd, "mytest-open", body)
    try:
        assert r.status in (200, 201), r.describe()
        assert r.json()["spec"]["unknown"] == "uk1"
    finally:
        _clear_finalizers(http, crd, "mytest-open")


CR_UNKNOWN_AND_DUPLICATE_JSON = """{
  "apiVersion": "%s",
  "kind": "%s",
  "metadata": {"name": "%s"},
  "spec": {"foo": "one", "foo": "two", "bar": "unknown", "cronSpec": "* * * * */5"}
}"""


def _post_cr(http, crd, name, validation):
    return http.request("POST", crd["path"],
                        CR_UNKNOWN_AND_DUPLICATE_JSON % (crd["apiVersion"], crd["kind"], name),
                        query={"fieldValidation": validation})


def test_field_validation_cr_post_strict(http, crds):
    """The CRD side of [sig-api-machinery] FieldValidation should detect
    unknown and duplicate fields of a typed object [Conformance]: a JSON
    create of a custom resource with an unknown and a duplicate field
    answers 400 under Strict, naming both."""
    crd = crds["strict"]
    r = _post_cr(http, crd, "cr-strict", "Strict")
    assert r.status == 400, r.describe()
    msg = status_body(r)["message"]
    assert "strict decoding error" in msg, msg
    assert 'unknown field "spec.bar"' in msg, msg
    assert re.search(r'duplicate field "(spec\.)?foo"', msg), msg
    assert http.get(f"{crd['path']}/cr-strict").status == 404


def test_field_validation_cr_post_warn_ignore(http, crds):
    """The CRD side of the Warn and Ignore counterparts of [sig-api-machinery]
    FieldValidation should detect unknown and duplicate fields of a typed
    object [Conformance]: Warn stores the pruned object with `Warning`
    headers, Ignore stores it silently; the last duplicate wins."""
    crd = crds["strict"]
    try:
        r = _post_cr(http, crd, "cr-warn", "Warn")
        assert r.status == 201, r.describe()
        assert 'unknown field "spec.bar"' in r.warnings, r.describe()
        assert any(re.fullmatch(r'duplicate field "(spec\.)?foo"', w) for w in r.warnings), \
            r.describe()
        assert r.json()["spec"] == {"foo": "two", "cronSpec": "* * * * */5"}

        r = _post_cr(http, crd, "cr-ignore", "Ignore")
        assert r.status == 201, r.describe()
        assert not [w for w in r.warnings if "field" in w], r.describe()
        assert r.json()["spec"] == {"foo": "two", "cronSpec": "* * * * */5"}
        stored = http.ok("GET", f"{crd['path']}/cr-ignore")
        assert stored["spec"] == {"foo": "two", "cronSpec": "* * * * */5"}
    finally:
        for name in ("cr-warn", "cr-ignore"):
            http.request("DELETE", f"{crd['path']}/{name}")


# ---------------------------------------------------------------------------
# Discovery (test/e2e/apimachinery/discovery.go, aggregated_discovery.go,
# custom_resource_definition.go, server_version.go)
# ---------------------------------------------------------------------------

# Group/version/resources every 1.33 API server serves (upstream's aggregated
# discovery test asks for one resource of each; a few more are named here).
EXPECTED_GVRS = {
    "v1": ["namespaces", "pods", "services", "configmaps", "secrets", "events",
           "podtemplates", "serviceaccounts", "endpoints", "nodes", "namespaces/status",
           "namespaces/finalize", "pods/status", "pods/log", "pods/exec", "pods/attach",
           "pods/portforward", "pods/binding", "serviceaccounts/token"],
    "admissionregistration.k8s.io/v1": ["validatingwebhookconfigurations",
                                        "mutatingwebhookconfigurations"],
    "apiextensions.k8s.io/v1": ["customresourcedefinitions",
                                "customresourcedefinitions/status"],
    "apiregistration.k8s.io/v1": ["apiservices"],
    "apps/v1": ["deployments", "replicasets", "statefulsets", "daemonsets",
                "controllerrevisions", "deployments/scale", "deployments/status"],
    "authentication.k8s.io/v1": ["tokenreviews"],
    "authorization.k8s.io/v1": ["selfsubjectaccessreviews"],
    "autoscaling/v1": ["horizontalpodautoscalers"],
    "autoscaling/v2": ["horizontalpodautoscalers"],
    "batch/v1": ["jobs", "cronjobs"],
    "certificates.k8s.io/v1": ["certificatesigningrequests"],
    "coordination.k8s.io/v1": ["leases"],
    "discovery.k8s.io/v1": ["endpointslices"],
    "events.k8s.io/v1": ["events"],
    "networking.k8s.io/v1": ["ingresses", "ingressclasses", "networkpolicies"],
    "node.k8s.io/v1": ["runtimeclasses"],
    "policy/v1": ["poddisruptionbudgets"],
    "rbac.authorization.k8s.io/v1": ["roles", "rolebindings", "clusterroles",
                                     "clusterrolebindings"],
    "scheduling.k8s.io/v1": ["priorityclasses"],
    "storage.k8s.io/v1": ["csinodes", "storageclasses"],
}

# Group/versions kedge does not serve yet (all else in EXPECTED_GVRS it does):
# {gv: reason}, and resources missing from a served group/version:
# {(gv, resource): reason}. Each entry marks its test a strict xfail on kedge.
KEDGE_MISSING_GVS = {}
KEDGE_MISSING_RESOURCES = {}


def _gv_params():
    params = []
    for gv in EXPECTED_GVRS:
        marks = [kedge_xfail(KEDGE_MISSING_GVS[gv])] if gv in KEDGE_MISSING_GVS else []
        missing = [r for (g, r) in KEDGE_MISSING_RESOURCES if g == gv]
        if missing and not marks:
            marks = [kedge_xfail(KEDGE_MISSING_RESOURCES[(gv, missing[0])])]
        params.append(pytest.param(gv, id=gv, marks=marks))
    return params


def _gv_path(gv):
    return "/api/v1" if gv == "v1" else f"/apis/{gv}"


AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


@pytest.fixture(scope="module")
def aggregated(http):
    """The aggregated discovery documents of /api and /apis, by group/version:
    {gv: {resource or resource/sub: verbs}}."""
    out = {}
    for path in ("/api", "/apis"):
        r = http.get(path, accept=AGGREGATED + ",application/json")
        assert r.status == 200, r.describe()
        assert "as=APIGroupDiscoveryList" in (r.headers.get("Content-Type") or ""), r.describe()
        doc = r.json()
        assert doc["kind"] == "APIGroupDiscoveryList", doc.get("kind")
        assert doc["apiVersion"] == "apidiscovery.k8s.io/v2", doc.get("apiVersion")
        for group in doc["items"]:
            gname = (group.get("metadata") or {}).get("name") or ""
            for version in group["versions"]:
                gv = f"{gname}/{version['version']}" if gname else version["version"]
                res = out.setdefault(gv, {})
                for resource in version.get("resources") or []:
                    res[resource["resource"]] = {
                        "verbs": sorted(resource.get("verbs") or []),
                        "scope": resource.get("scope"),
                        "kind": (resource.get("responseKind") or {}).get("kind")}
                    for sub in resource.get("subresources") or []:
                        res[f"{resource['resource']}/{sub['subresource']}"] = {
                            "verbs": sorted(sub.get("verbs") or []),
                            "kind": (sub.get("responseKind") or {}).get("kind")}
    return out


@pytest.mark.parametrize("gv", _gv_params())
def test_discovery_group_version_resources(http, aggregated, gv):
    """[sig-api-machinery] Discovery should locate the groupVersion and a
    resource within each APIGroup [Conformance], and
    [sig-api-machinery] AggregatedDiscovery should support raw aggregated
    discovery endpoint Accept headers [Conformance]: each expected group/
    version document lists its expected resources, and the aggregated
    document lists the same resources with the same verbs."""
    doc = http.ok("GET", _gv_path(gv))
    assert doc["kind"] == "APIResourceList" and doc["groupVersion"] == gv, doc
    plain = {r["name"]: r for r in doc["resources"]}
    missing = [r for r in EXPECTED_GVRS[gv] if r not in plain]
    assert not missing, f"{gv} lacks {missing}; has {sorted(plain)}"

    assert gv in aggregated, f"{gv} missing from aggregated discovery"
    agg = aggregated[gv]
    assert sorted(agg) == sorted(plain), \
        f"aggregated and unaggregated {gv} disagree: {set(agg) ^ set(plain)}"
    for name, r in plain.items():
        assert agg[name]["verbs"] == sorted(r.get("verbs") or []), (gv, name)
        if "/" not in name:
            assert agg[name]["scope"] == ("Namespaced" if r["namespaced"] else "Cluster"), name
            assert agg[name]["kind"] == r["kind"], name


def test_discovery_preferred_versions(http, aggregated):
    """[sig-api-machinery] Discovery should validate PreferredVersion for each
    APIGroup [Conformance], over /api, /apis and /apis/<group>, and the same
    group/versions in aggregated discovery."""
    core_doc = http.ok("GET", "/api")
    assert core_doc["kind"] == "APIVersions" and "v1" in core_doc["versions"], core_doc
    groups = http.ok("GET", "/apis")
    assert groups["kind"] == "APIGroupList", groups
    seen = set()
    for g in groups["groups"]:
        versions = [v["groupVersion"] for v in g["versions"]]
        assert g["preferredVersion"]["groupVersion"] in versions, g
        assert all(v["groupVersion"] == f"{g['name']}/{v['version']}" for v in g["versions"]), g
        one = http.ok("GET", f"/apis/{g['name']}")
        assert one["kind"] == "APIGroup" and one["name"] == g["name"], one
        assert one["preferredVersion"] == g["preferredVersion"], (one, g)
        assert [v["groupVersion"] for v in one["versions"]] == versions
        seen.update(versions)
    seen.add("v1")
    assert seen == set(aggregated), \
        f"aggregated discovery differs from /api + /apis: {seen ^ set(aggregated)}"


def test_discovery_aggregated_accept_fallback(http):
    """[sig-api-machinery] AggregatedDiscovery should support raw aggregated
    discovery endpoint Accept headers [Conformance]: the aggregated type only
    when asked for; a plain JSON Accept gets the APIGroupList."""
    r = http.get("/apis", accept=AGGREGATED)
    assert r.status == 200 and r.json()["kind"] == "APIGroupDiscoveryList", r.describe()
    r = http.get("/apis", accept="application/json")
    assert r.status == 200 and r.json()["kind"] == "APIGroupList", r.describe()
    r = http.get("/api", accept=AGGREGATED)
    items = r.json()["items"]
    assert [v["version"] for v in items[0]["versions"]] == ["v1"], items


def test_discovery_includes_crd(http, crds):
    """[sig-api-machinery] CustomResourceDefinition resources
    [Privileged:ClusterAdmin] should include custom resource definition
    resources in discovery documents [Conformance], and
    [sig-api-machinery] AggregatedDiscovery should support raw aggregated
    discovery request for CRDs [Conformance]"""
    crd = crds["strict"]
    doc = http.ok("GET", f"/apis/{crd['group']}/v1")
    assert crd["plural"] in [r["name"] for r in doc["resources"]], doc

    def in_aggregated():
        d = http.ok("GET", "/apis", accept=AGGREGATED)
        for g in d["items"]:
            if g["metadata"].get("name") == crd["group"]:
                return any(r["resource"] == crd["plural"]
                           for v in g["versions"] for r in v.get("resources") or [])
        return False
    wait_for("the CRD in aggregated discovery", in_aggregated, timeout=30, interval=0.5)

    ext = http.ok("GET", "/apis/apiextensions.k8s.io")
    assert "apiextensions.k8s.io/v1" in [v["groupVersion"] for v in ext["versions"]]


def test_server_version(api, http):
    """[sig-api-machinery] server version should find the server version
    [Conformance]: major and minor are integers (a trailing + allowed on
    minor), and the typed client reads what /version serves."""
    info = client.VersionApi(api).get_code(_request_timeout=TIMEOUT)
    assert re.fullmatch(r"\d+", info.major), info
    assert re.fullmatch(r"\d+\+?", info.minor), info
    raw = http.ok("GET", "/version")
    assert raw["major"] == info.major and raw["minor"] == info.minor
    assert raw["gitVersion"] == info.git_version and raw["platform"] == info.platform
    assert raw["gitVersion"].startswith(f"v{info.major}.{info.minor.rstrip('+')}."), raw
