"""Pytest fixtures for the Kubernetes API double; import them into a ``conftest.py``::

    from tests.k8s_double.fixtures import k8s_double, kubeconfig_for_double, k8s_api_client  # noqa: F401

- ``k8s_double``: a started :class:`~tests.k8s_double.server.K8sDouble` (empty but for the
  ``default`` and ``kube-system`` namespaces), stopped after the test. Seed it with
  ``k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge"))`` etc.
- ``kubeconfig_for_double``: ``(path, context)`` of a kubeconfig file in ``tmp_path`` whose only
  (and current) context, ``hyperpod-test``, points at the double with bearer-token auth.
  It does not touch ``$KUBECONFIG``; set it with ``monkeypatch.setenv`` where the code reads it.
- ``k8s_api_client``: a real ``kubernetes.client.ApiClient`` loaded from that kubeconfig.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from tests.k8s_double.server import K8sDouble

CONTEXT = "hyperpod-test"


class KubeconfigRef(NamedTuple):
    path: Path
    context: str


def write_kubeconfig(
    double: K8sDouble, path: Path, *, context: str = CONTEXT, namespace: str = "default"
) -> KubeconfigRef:
    """A kubeconfig with one cluster/user/context for the double (what `aws eks update-kubeconfig` writes, minus exec auth)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": context,
        "clusters": [{"name": f"{context}-cluster", "cluster": {"server": double.url}}],
        "users": [{"name": f"{context}-user", "user": {"token": double.token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": f"{context}-cluster", "user": f"{context}-user", "namespace": namespace},
            }
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return KubeconfigRef(path, context)


@pytest.fixture
def k8s_double() -> Iterator[K8sDouble]:
    with K8sDouble() as double:
        yield double


@pytest.fixture
def kubeconfig_for_double(k8s_double: K8sDouble, tmp_path: Path) -> KubeconfigRef:
    return write_kubeconfig(k8s_double, tmp_path / "kube" / "config")


@pytest.fixture
def k8s_api_client(kubeconfig_for_double: KubeconfigRef):
    from kubernetes import config

    client = config.new_client_from_config(
        config_file=str(kubeconfig_for_double.path), context=kubeconfig_for_double.context
    )
    yield client
    client.close()
