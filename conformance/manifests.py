"""Minimal valid manifests for every kind the conformance suite creates.

Each manifest passes upstream Kubernetes 1.33 validation. Pods never run:
they carry a node selector no node has, so they stay Pending on any cluster
and are deleted at once (an unscheduled pod has no kubelet to wait for).
Endpoint addresses come from TEST-NET-1 (192.0.2.0/24, RFC 5737): they are
data only, and no Service selects them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Callable

# A node selector that no node satisfies.
UNSCHEDULABLE = {"kedge.io/conformance-unschedulable": "true"}
IMAGE = "busybox:stable"

# A real PKCS#10 request (EC P-256, CN=kedge-conformance), base64 of its PEM:
# upstream validation parses spec.request. A CSR never expires.
CSR_REQUEST_B64 = (
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIV01INENBUUF3SERFYU1CZ0dBMVVF"
    "QXd3UmEyVmtaMlV0WTI5dVptOXliV0Z1WTJVd1dUQVRCZ2NxaGtqTwpQUUlCQmdncWhrak9QUU1CQndO"
    "Q0FBUm5Ld1RKb2FnVDJWMVlTd3dwRDB1cDZTQ0prdmNWRUFiYk1yNUdIMk1jCkhZaEcwM0svY05TMi9u"
    "ZzlJRVF5R1NVZ3VnNzdKZHJpYThWelhXRXdQTFFtb0FBd0NnWUlLb1pJemowRUF3SUQKU0FBd1JRSWhB"
    "T2JlMXpFZ0cwOElKZ1Y0OVVRaUtlNy9GVk9SWEVrV05VRTA4ejFPNTIyTkFpQUZnMTRCSENpRQp0YUlN"
    "eC9BaURNL3I2eGxlWmJZVjBaUGtzQWp4bFY5TFVBPT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUgUkVRVUVT"
    "VC0tLS0tCg=="
)


@dataclass(frozen=True)
class Ctx:
    ns: str
    """The test module's namespace."""
    tag: str
    """Distinguishes kubectl versions, e.g. "k127"."""
    suffix: str
    """Unique to the session."""


def pod_spec(restart_policy: str = "Always") -> dict:
    return {
        "nodeSelector": dict(UNSCHEDULABLE),
        "restartPolicy": restart_policy,
        "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}],
    }


def pod_template(labels: dict, restart_policy: str = "Always") -> dict:
    return {"metadata": {"labels": dict(labels)}, "spec": pod_spec(restart_policy)}


def configmap(ns, name, data=None, labels=None) -> dict:
    meta = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": data if data is not None else {"a": "1"}}


def deployment(ns, name, replicas: int = 1) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec()}}}


def pod(ns, name, labels=None) -> dict:
    meta = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec()}


def micro_time_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class KindCase:
    resource: str
    """How kubectl names it: plural, qualified by group outside the core group."""
    api_version: str
    kind: str
    namespaced: bool
    body: Callable[[Ctx, str], dict]
    """Top-level fields besides apiVersion, kind and metadata, given (ctx, name)."""
    shortnames: str = ""
    """Upstream's short names as `kubectl api-resources` prints them."""
    custom_name: Callable[[Ctx], str] | None = None

    @property
    def id(self) -> str:
        return self.resource.replace(".", "-")

    @property
    def plural(self) -> str:
        return self.resource.split(".", 1)[0]

    def name(self, ctx: Ctx) -> str:
        if self.custom_name is not None:
            return self.custom_name(ctx)
        if self.namespaced:
            return f"c-{self.id}"
        return f"conf-{ctx.suffix}-{ctx.tag}-{self.id}"

    def manifest(self, ctx: Ctx) -> dict:
        name = self.name(ctx)
        metadata = {"name": name}
        if self.namespaced:
            metadata["namespace"] = ctx.ns
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": metadata,
                **self.body(ctx, name)}


def _labels(name: str) -> dict:
    return {"app": name}


def _workload_spec(name: str, replicas: bool = True, **extra) -> dict:
    spec = {
        "selector": {"matchLabels": _labels(name)},
        "template": pod_template(_labels(name)),
        **extra,
    }
    if replicas:
        spec = {"replicas": 1, **spec}
    return {"spec": spec}


def _crd_group(ctx: Ctx) -> str:
    return f"{ctx.tag}-{ctx.suffix}.conformance.kedge.io"


RBAC = "rbac.authorization.k8s.io"

KIND_CASES = [
    KindCase("namespaces", "v1", "Namespace", False, lambda c, n: {}, "ns"),
    KindCase("pods", "v1", "Pod", True, lambda c, n: {"spec": pod_spec()}, "po"),
    KindCase(
        "nodes", "v1", "Node", False,
        # A node object only: nothing may be scheduled onto it.
        lambda c, n: {"spec": {
            "unschedulable": True,
            "taints": [{"key": "kedge.io/conformance", "effect": "NoSchedule"}],
        }},
        "no",
    ),
    KindCase(
        "services", "v1", "Service", True,
        lambda c, n: {"spec": {"selector": _labels(n),
                               "ports": [{"port": 80, "protocol": "TCP"}]}},
        "svc",
    ),
    KindCase(
        "endpoints", "v1", "Endpoints", True,
        lambda c, n: {"subsets": [{"addresses": [{"ip": "192.0.2.10"}],
                                   "ports": [{"port": 80, "protocol": "TCP"}]}]},
        "ep",
    ),
    KindCase("configmaps", "v1", "ConfigMap", True, lambda c, n: {"data": {"a": "1"}}, "cm"),
    KindCase(
        "secrets", "v1", "Secret", True,
        lambda c, n: {"type": "Opaque", "data": {"a": "MQ=="}},
    ),
    KindCase("serviceaccounts", "v1", "ServiceAccount", True, lambda c, n: {}, "sa"),
    KindCase(
        "events", "v1", "Event", True,
        # Core events: involvedObject.namespace must equal the event's.
        lambda c, n: {
            "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap",
                               "name": "c-configmaps", "namespace": c.ns},
            "reason": "Testing", "message": "kedge conformance", "type": "Normal",
        },
        "ev",
    ),
    KindCase(
        "podtemplates", "v1", "PodTemplate", True,
        lambda c, n: {"template": pod_template(_labels(n))},
    ),
    KindCase(
        "limitranges", "v1", "LimitRange", True,
        lambda c, n: {"spec": {"limits": [{"type": "Container",
                                           "default": {"cpu": "100m"},
                                           "defaultRequest": {"cpu": "50m"}}]}},
        "limits",
    ),
    KindCase(
        "resourcequotas", "v1", "ResourceQuota", True,
        lambda c, n: {"spec": {"hard": {"pods": "100"}}}, "quota",
    ),
    KindCase(
        "persistentvolumes", "v1", "PersistentVolume", False,
        lambda c, n: {"spec": {"capacity": {"storage": "1Gi"},
                               "accessModes": ["ReadWriteOnce"],
                               "hostPath": {"path": "/tmp/kedge-conformance-pv"}}},
        "pv",
    ),
    KindCase(
        "persistentvolumeclaims", "v1", "PersistentVolumeClaim", True,
        # storageClassName "": no dynamic provisioning on any cluster.
        lambda c, n: {"spec": {"accessModes": ["ReadWriteOnce"],
                               "storageClassName": "",
                               "resources": {"requests": {"storage": "1Gi"}}}},
        "pvc",
    ),
    KindCase(
        "replicationcontrollers", "v1", "ReplicationController", True,
        lambda c, n: {"spec": {"replicas": 1, "selector": _labels(n),
                               "template": pod_template(_labels(n))}},
        "rc",
    ),
    KindCase("deployments.apps", "apps/v1", "Deployment", True,
             lambda c, n: _workload_spec(n), "deploy"),
    KindCase("replicasets.apps", "apps/v1", "ReplicaSet", True,
             lambda c, n: _workload_spec(n), "rs"),
    KindCase("daemonsets.apps", "apps/v1", "DaemonSet", True,
             lambda c, n: _workload_spec(n, replicas=False), "ds"),
    KindCase("statefulsets.apps", "apps/v1", "StatefulSet", True,
             lambda c, n: _workload_spec(n, serviceName=n), "sts"),
    KindCase(
        "controllerrevisions.apps", "apps/v1", "ControllerRevision", True,
        lambda c, n: {"revision": 1, "data": {"note": "kedge conformance"}},
    ),
    KindCase(
        "jobs.batch", "batch/v1", "Job", True,
        # Suspended: no pod is created.
        lambda c, n: {"spec": {"suspend": True,
                               "template": {"spec": pod_spec("Never")}}},
    ),
    KindCase(
        "cronjobs.batch", "batch/v1", "CronJob", True,
        lambda c, n: {"spec": {"schedule": "0 0 1 1 *", "suspend": True,
                               "jobTemplate": {"spec": {"template": {"spec": pod_spec("Never")}}}}},
        "cj",
    ),
    KindCase(
        "leases.coordination.k8s.io", "coordination.k8s.io/v1", "Lease", True,
        lambda c, n: {"spec": {"holderIdentity": "kedge-conformance",
                               "leaseDurationSeconds": 15}},
    ),
    KindCase(
        "endpointslices.discovery.k8s.io", "discovery.k8s.io/v1", "EndpointSlice", True,
        lambda c, n: {"addressType": "IPv4",
                      "endpoints": [{"addresses": ["192.0.2.10"]}],
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    ),
    KindCase(
        "events.events.k8s.io", "events.k8s.io/v1", "Event", True,
        # events.k8s.io/v1 creates need eventTime, reportingController,
        # reportingInstance, action, reason and a Normal/Warning type.
        lambda c, n: {
            "eventTime": micro_time_now(),
            "reportingController": "kedge.io/conformance",
            "reportingInstance": "conformance",
            "action": "Testing",
            "reason": "Testing",
            "type": "Normal",
            "note": "kedge conformance",
            "regarding": {"apiVersion": "v1", "kind": "ConfigMap",
                          "name": "c-configmaps", "namespace": c.ns},
        },
        "ev",
    ),
    KindCase(
        f"roles.{RBAC}", f"{RBAC}/v1", "Role", True,
        lambda c, n: {"rules": [{"apiGroups": [""], "resources": ["configmaps"],
                                 "verbs": ["get", "list"]}]},
    ),
    KindCase(
        f"rolebindings.{RBAC}", f"{RBAC}/v1", "RoleBinding", True,
        lambda c, n: {"roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
                      "subjects": [{"kind": "ServiceAccount", "name": "default",
                                    "namespace": c.ns}]},
    ),
    KindCase(
        f"clusterroles.{RBAC}", f"{RBAC}/v1", "ClusterRole", False,
        lambda c, n: {"rules": [{"apiGroups": [""], "resources": ["configmaps"],
                                 "verbs": ["get"]}]},
    ),
    KindCase(
        f"clusterrolebindings.{RBAC}", f"{RBAC}/v1", "ClusterRoleBinding", False,
        lambda c, n: {"roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
                      "subjects": [{"kind": "ServiceAccount", "name": "default",
                                    "namespace": c.ns}]},
    ),
    KindCase(
        "runtimeclasses.node.k8s.io", "node.k8s.io/v1", "RuntimeClass", False,
        lambda c, n: {"handler": "conformance"},
    ),
    KindCase(
        "priorityclasses.scheduling.k8s.io", "scheduling.k8s.io/v1", "PriorityClass", False,
        lambda c, n: {"value": 1000, "globalDefault": False,
                      "description": "kedge conformance"},
        "pc",
    ),
    KindCase(
        "poddisruptionbudgets.policy", "policy/v1", "PodDisruptionBudget", True,
        lambda c, n: {"spec": {"minAvailable": 1, "selector": {"matchLabels": _labels(n)}}},
        "pdb",
    ),
    KindCase(
        "ingresses.networking.k8s.io", "networking.k8s.io/v1", "Ingress", True,
        lambda c, n: {"spec": {"defaultBackend": {"service": {"name": "backend",
                                                              "port": {"number": 80}}}}},
        "ing",
    ),
    KindCase(
        "ingressclasses.networking.k8s.io", "networking.k8s.io/v1", "IngressClass", False,
        lambda c, n: {"spec": {"controller": "kedge.io/conformance"}},
    ),
    KindCase(
        "networkpolicies.networking.k8s.io", "networking.k8s.io/v1", "NetworkPolicy", True,
        lambda c, n: {"spec": {"podSelector": {"matchLabels": _labels(n)},
                               "policyTypes": ["Ingress"]}},
        "netpol",
    ),
    KindCase(
        "storageclasses.storage.k8s.io", "storage.k8s.io/v1", "StorageClass", False,
        lambda c, n: {"provisioner": "kedge.io/conformance-none"},
        "sc",
    ),
    KindCase(
        "csidrivers.storage.k8s.io", "storage.k8s.io/v1", "CSIDriver", False,
        lambda c, n: {"spec": {"attachRequired": False}},
        custom_name=lambda c: f"{c.tag}-{c.suffix}.csi.conformance.kedge.io",
    ),
    KindCase(
        "certificatesigningrequests.certificates.k8s.io", "certificates.k8s.io/v1",
        "CertificateSigningRequest", False,
        # A custom signer: no built-in approver or signer acts on it.
        lambda c, n: {"spec": {"request": CSR_REQUEST_B64,
                               "signerName": "kedge.io/conformance",
                               "usages": ["digital signature", "client auth"]}},
        "csr",
    ),
    KindCase(
        "customresourcedefinitions.apiextensions.k8s.io", "apiextensions.k8s.io/v1",
        "CustomResourceDefinition", False,
        lambda c, n: {"spec": {
            "group": _crd_group(c),
            "names": {"plural": "widgets", "singular": "widget",
                      "kind": "Widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }],
        }},
        "crd,crds",
        custom_name=lambda c: f"widgets.{_crd_group(c)}",
    ),
]
