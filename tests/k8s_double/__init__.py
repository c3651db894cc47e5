"""A loopback Kubernetes API server double (see ``server.py``), object builders (``seed.py``) and
pytest fixtures (``fixtures.py``) for testing code that uses the real ``kubernetes`` client or SkyPilot."""

from tests.k8s_double.fixtures import CONTEXT, KubeconfigRef, write_kubeconfig
from tests.k8s_double.server import ApiError, K8sDouble, Request

__all__ = ["CONTEXT", "ApiError", "K8sDouble", "KubeconfigRef", "Request", "write_kubeconfig"]
