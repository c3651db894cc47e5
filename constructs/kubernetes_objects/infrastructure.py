"""Kubernetes objects managed by CloudFormation: applied on create/update, deleted (and waited for) on delete.

Served by the HyperPod Helm chart installer's function (``constructs/hyperpod_helm_chart``; runtime in its
``helm_chart_installer/kubernetes_objects.py``), which already has the cluster's EKS access entry, its VPC
placement and its bearer-token auth: this construct only declares the objects. Make it depend on whatever
the objects point to (a file system, a CSI driver), so CloudFormation deletes the objects first.
"""

from __future__ import annotations

import aws_cdk as cdk

from constructs import Construct
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.kubernetes_objects import (
    RESOURCE_TYPE,
    ObjectRef,
)


class KubernetesObjects(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        service_token: str,
        cluster_name: str,
        manifests: list[dict],
    ) -> None:
        super().__init__(scope, construct_id)
        refs = [ObjectRef.of(m) for m in manifests]  # an unsupported kind or a nameless object fails synth
        if len(set(refs)) != len(refs):
            raise ValueError(f"{self.node.path}: an object is listed twice: {', '.join(map(str, refs))}")
        stack = cdk.Stack.of(self)
        self.refs = refs
        self.resource = cdk.CustomResource(
            self,
            "Objects",
            service_token=service_token,
            resource_type=RESOURCE_TYPE,
            # Deleting waits for PersistentVolumeClaims to be released; fail fast if the function never answers.
            service_timeout=cdk.Duration.minutes(20),
            properties={
                "ClusterName": cluster_name,
                "Region": stack.region,
                # One JSON string: CloudFormation would turn booleans and numbers in nested objects into strings.
                "Manifests": stack.to_json_string(manifests),
            },
        )
