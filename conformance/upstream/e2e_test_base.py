"""Stands in for `kubernetes.e2e_test.base`, which the vendored upstream tests
import and the `kubernetes` sdist does not ship.

Upstream's module finds a cluster on its own (~/.kube/config, else
localhost:8443/8080); this one returns a Configuration for the cluster under
test, whose kubeconfig test_python_dynamic.py sets in KUBECONFIG before the
first test class is set up.
"""

from __future__ import annotations

from typing import Optional

from kubernetes.client import Configuration
from kubernetes.config import kube_config

KUBECONFIG: Optional[str] = None
"""Path of the kubeconfig file of the cluster under test."""


def get_e2e_configuration() -> Configuration:
    if KUBECONFIG is None:
        raise RuntimeError("e2e_test_base.KUBECONFIG is unset: the `cluster` fixture "
                           "has not run (see test_python_dynamic.py)")
    config = Configuration()
    kube_config.load_kube_config(config_file=KUBECONFIG, client_configuration=config)
    config.assert_hostname = False  # as upstream's get_e2e_configuration does
    return config
