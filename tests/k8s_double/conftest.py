from tests.k8s_double.fixtures import k8s_api_client, k8s_double, kubeconfig_for_double  # noqa: F401
