"""The official Python client (`kubernetes` on PyPI) against the cluster."""

from __future__ import annotations

import json
import re
import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from manifests import pod_spec

TIMEOUT = 30  # seconds, for every request


@pytest.fixture(scope="module")
def api(cluster):
    c = config.new_client_from_config(config_file=cluster.kubeconfig)
    yield c
    c.close()


@pytest.fixture(scope="module")
def core(api):
    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def ns(core, cluster):
    name = f"conf-python-{cluster.suffix}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)),
                          _request_timeout=TIMEOUT)
    yield name
    try:
        core.delete_namespace(name, _request_timeout=TIMEOUT)
    except ApiException as e:
        if e.status != 404:
            raise


def cm(name, data=None, labels=None) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        data=data if data is not None else {"a": "1"},
    )


def status_of(e: ApiException) -> dict:
    body = json.loads(e.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1", body
    assert body["status"] == "Failure", body
    assert body["code"] == e.status, body
    return body


def test_configmap_crud(core, ns):
    created = core.create_namespaced_config_map(ns, cm("crud", {"a": "1"}),
                                                _request_timeout=TIMEOUT)
    assert created.metadata.name == "crud" and created.metadata.namespace == ns
    assert created.metadata.uid and created.metadata.resource_version
    assert created.data == {"a": "1"}

    read = core.read_namespaced_config_map("crud", ns, _request_timeout=TIMEOUT)
    assert read.metadata.uid == created.metadata.uid
    assert read.data == {"a": "1"}

    listed = core.list_namespaced_config_map(ns, _request_timeout=TIMEOUT)
    assert "crud" in [i.metadata.name for i in listed.items]
    assert listed.metadata.resource_version

    read.data = {"a": "2", "b": "3"}
    updated = core.replace_namespaced_config_map("crud", ns, read, _request_timeout=TIMEOUT)
    assert updated.data == {"a": "2", "b": "3"}
    assert updated.metadata.uid == created.metadata.uid
    assert updated.metadata.resource_version != created.metadata.resource_version
    assert core.read_namespaced_config_map("crud", ns, _request_timeout=TIMEOUT).data == \
        {"a": "2", "b": "3"}

    core.delete_namespaced_config_map("crud", ns, _request_timeout=TIMEOUT)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("crud", ns, _request_timeout=TIMEOUT)
    assert e.value.status == 404


def test_list_paging(core, api, cluster):
    # A namespace of its own, so that nothing else lists in it but what the
    # cluster itself puts in every namespace (kube-root-ca.crt).
    paging_ns = f"conf-python-paging-{cluster.suffix}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=paging_ns)),
                          _request_timeout=TIMEOUT)
    try:
        names = {f"page-{i}" for i in range(5)}
        for name in sorted(names):
            core.create_namespaced_config_map(paging_ns, cm(name), _request_timeout=TIMEOUT)

        pages = []
        token = None
        while True:
            kwargs = {"limit": 2, "_request_timeout": TIMEOUT}
            if token:
                kwargs["_continue"] = token
            page = core.list_namespaced_config_map(paging_ns, **kwargs)
            pages.append(page)
            assert len(pages) <= 20, "paging does not end"
            token = page.metadata._continue
            if not token:
                break

        seen = [i.metadata.name for p in pages for i in p.items]
        assert len(seen) == len(set(seen)), f"an object came back twice: {seen}"
        assert names <= set(seen), f"missing: {names - set(seen)}"
        assert len(pages) >= 3  # at least 5 objects, 2 a page
        for i, p in enumerate(pages[:-1]):
            assert len(p.items) == 2, [x.metadata.name for x in p.items]
            # remainingItemCount counts what the later pages returned.
            later = sum(len(q.items) for q in pages[i + 1:])
            assert p.metadata.remaining_item_count == later, (i, p.metadata)
        # The last page has no continue token, and nothing remains.
        assert 1 <= len(pages[-1].items) <= 2
        assert pages[-1].metadata.remaining_item_count in (None, 0)
        # Every page of one list is served at the first page's resourceVersion.
        assert {p.metadata.resource_version for p in pages} == \
            {pages[0].metadata.resource_version}
    finally:
        try:
            core.delete_namespace(paging_ns, _request_timeout=TIMEOUT)
        except ApiException as e:
            if e.status != 404:
                raise


def test_watch_sees_changes_in_order(core, ns):
    selector = "watch=python"
    start = core.list_namespaced_config_map(ns, label_selector=selector,
                                            _request_timeout=TIMEOUT)
    errors = []

    def mutate():
        try:
            core.create_namespaced_config_map(ns, cm("watched", {"a": "1"}, {"watch": "python"}),
                                              _request_timeout=TIMEOUT)
            obj = core.read_namespaced_config_map("watched", ns, _request_timeout=TIMEOUT)
            obj.data = {"a": "2"}
            core.replace_namespaced_config_map("watched", ns, obj, _request_timeout=TIMEOUT)
            core.delete_namespaced_config_map("watched", ns, _request_timeout=TIMEOUT)
        except Exception as e:  # reported below, in the test's thread
            errors.append(e)

    events = []
    w = watch.Watch()
    thread = threading.Thread(target=mutate)
    thread.start()
    try:
        # From the list's resourceVersion: every change after the list is
        # delivered, whenever the watch request itself lands.
        for ev in w.stream(core.list_namespaced_config_map, ns, label_selector=selector,
                           resource_version=start.metadata.resource_version,
                           timeout_seconds=5):
            if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                events.append((ev["type"], ev["object"].metadata.name,
                               (ev["object"].data or {}).get("a")))
            if ev["type"] == "DELETED":
                w.stop()
    finally:
        thread.join(timeout=TIMEOUT)
    assert not errors, errors
    assert events == [("ADDED", "watched", "1"), ("MODIFIED", "watched", "2"),
                      ("DELETED", "watched", "2")], events


def test_stale_update_is_409(core, ns):
    core.create_namespaced_config_map(ns, cm("stale", {"a": "1"}), _request_timeout=TIMEOUT)
    old = core.read_namespaced_config_map("stale", ns, _request_timeout=TIMEOUT)
    fresh = core.read_namespaced_config_map("stale", ns, _request_timeout=TIMEOUT)
    fresh.data = {"a": "2"}
    core.replace_namespaced_config_map("stale", ns, fresh, _request_timeout=TIMEOUT)

    old.data = {"a": "3"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("stale", ns, old, _request_timeout=TIMEOUT)
    assert e.value.status == 409
    body = status_of(e.value)
    assert body["reason"] == "Conflict", body
    assert "the object has been modified" in body["message"], body
    assert core.read_namespaced_config_map("stale", ns, _request_timeout=TIMEOUT).data == \
        {"a": "2"}


def test_missing_object_is_404(core, ns):
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("no-such-configmap", ns, _request_timeout=TIMEOUT)
    assert e.value.status == 404
    body = status_of(e.value)
    assert body["reason"] == "NotFound", body
    assert body["details"]["name"] == "no-such-configmap", body
    assert body["details"]["kind"] == "configmaps", body


def test_deployment_generation(api, ns):
    apps = client.AppsV1Api(api)
    labels = {"app": "py-deploy"}
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "py-deploy"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec()}},
    }
    created = apps.create_namespaced_deployment(ns, body, _request_timeout=TIMEOUT)
    assert created.metadata.generation == 1
    read = apps.read_namespaced_deployment("py-deploy", ns, _request_timeout=TIMEOUT)
    assert read.metadata.generation == 1
    assert read.spec.replicas == 1
    assert read.spec.template.spec.containers[0].name == "c"


def test_deployment_defaults(api, ns):
    """apps/v1 defaulting, as upstream does it on create."""
    apps = client.AppsV1Api(api)
    labels = {"app": "py-defaults"}
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "py-defaults"},
        "spec": {"selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"nodeSelector": pod_spec()["nodeSelector"],
                                       "containers": [{"name": "c", "image": "busybox"}]}}},
    }
    apps.create_namespaced_deployment(ns, body, _request_timeout=TIMEOUT)
    spec = apps.read_namespaced_deployment("py-defaults", ns, _request_timeout=TIMEOUT).spec
    assert spec.replicas == 1
    assert spec.strategy is not None and spec.strategy.type == "RollingUpdate", spec.strategy
    assert spec.strategy.rolling_update.max_surge == "25%"
    assert spec.strategy.rolling_update.max_unavailable == "25%"
    assert spec.revision_history_limit == 10
    assert spec.progress_deadline_seconds == 600
    pod = spec.template.spec
    assert pod.restart_policy == "Always"
    assert pod.dns_policy == "ClusterFirst"
    assert pod.termination_grace_period_seconds == 30
    assert pod.containers[0].termination_message_path == "/dev/termination-log"
    assert pod.containers[0].image_pull_policy == "Always"  # no tag means :latest


def test_version(api, cluster):
    info = client.VersionApi(api).get_code(_request_timeout=TIMEOUT)
    assert info.major == "1"
    assert re.match(r"^v1\.\d+\.\d+", info.git_version), info
    if cluster.is_kedge:
        assert info.git_version.startswith("v1.33."), info
        assert "+kedge" in info.git_version, info
        assert info.minor == "33", info
