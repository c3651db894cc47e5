"""A small CloudFormation on moto: creates what the synthesized templates declare, with the
properties they declare, resolved the way CloudFormation would resolve them.

Which resources are created:

- eagerly, for every resource of the type in a deployed stack: VPCs, subnets, security groups,
  S3 buckets, ``Custom::CDKBucketDeployment`` (the real asset folder is uploaded under the
  declared prefix), EKS clusters, the HyperPod custom resource (through the replayed Provider
  framework, ``provider.py``), WaitConditions (the poller state machine is replayed until it
  signals the handle), Amazon Managed Service for Prometheus workspaces (moto's ``amp``) and EKS
  add-ons: moto has no add-on API, so an add-on is checked the way EKS checks it at CreateAddon
  (its cluster exists; each Pod Identity role exists and trusts ``pods.eks.amazonaws.com`` for this
  cluster's ARN; its configuration is JSON) and recorded, not created;
- on demand, when a value being resolved refers to them: IAM roles (with their inline policies;
  moto checks the policy grammar), Step Functions state machines (with their resolved definition),
  WaitCondition handles (a loopback URL) and Lambda functions, which are *not* created in moto
  (invoking them there needs Docker): their ARN is computed and the rehearsal runs their code from
  the asset itself (``lambdas.py``);
- nothing else. A reference to any other resource (a log group, the Helm chart, a NAT gateway)
  raises ``Unresolvable`` naming the template path, so a new dependency of the handlers or of an
  output is noticed instead of faked.

Physical names of unnamed resources follow CloudFormation's ``<stack>-<logical id>-<suffix>``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from botocore.config import Config

from constructs.hyperpod_cluster.infrastructure import RESOURCE_TYPE as HYPERPOD_CLUSTER_TYPE
from tests.rehearsal.assembly import CloudAssembly, Stack
from tests.rehearsal.intrinsics import Resolver, Unresolvable
from tests.rehearsal.lambdas import LambdaProcess, LambdaSpec, aws_environment

BUCKET_DEPLOYMENT_TYPE = "Custom::CDKBucketDeployment"
# Provider-framework custom resources whose handlers the rehearsal runs. Others (the Helm chart
# installer, S3 auto-delete) need a real cluster or only clean up; their dependents are not rehearsed.
PROVIDER_BACKED = (HYPERPOD_CLUSTER_TYPE,)
EAGER_TYPES = (
    "AWS::EC2::VPC",
    "AWS::EC2::Subnet",
    "AWS::EC2::SecurityGroup",
    "AWS::S3::Bucket",
    BUCKET_DEPLOYMENT_TYPE,
    "AWS::EKS::Cluster",
    *PROVIDER_BACKED,
    "AWS::CloudFormation::WaitCondition",
    "AWS::APS::Workspace",
    "AWS::EKS::Addon",
)


class DeploymentFailed(RuntimeError):
    """What CloudFormation would show as CREATE_FAILED/DELETE_FAILED, with the resource named."""


class WaitHandle(Protocol):
    url: str

    def bodies(self) -> list[dict]: ...


@dataclass
class Physical:
    type: str
    ref: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    # What later steps need: a custom resource's resolved properties (its Delete request carries them),
    # the object keys a BucketDeployment uploaded, the managed policies a role names.
    details: dict[str, Any] = field(default_factory=dict)


class MotoStacks:
    def __init__(
        self,
        assembly: CloudAssembly,
        *,
        endpoint: str,
        account: str,
        default_region: str,
        wait_handle: Callable[[str], WaitHandle],
        on_eks_cluster: Callable[[str, str], None] | None = None,
        poll_sleep: float = 0.05,
    ):
        self.assembly, self.endpoint, self.account = assembly, endpoint, account
        self.default_region = default_region
        self._new_wait_handle, self._on_eks_cluster, self.poll_sleep = wait_handle, on_eks_cluster, poll_sleep
        self.physical: dict[tuple[str, str], Physical] = {}
        self.events: list[str] = []  # "<STATUS> <stack>/<logical id> (<type>) <physical id>", in order
        self.handles: dict[str, WaitHandle] = {}
        self._functions_by_arn: dict[str, tuple[Stack, str]] = {}
        self._processes: dict[str, LambdaProcess] = {}
        self._creating: list[tuple[str, str]] = []
        self._clients: dict[tuple[str, str], Any] = {}
        self.executions_replayed: set[str] = set()  # Step Functions executions already run

    # ----- plumbing -----------------------------------------------------------------------------
    def region(self, stack: Stack) -> str:
        return stack.region or self.default_region

    def client(self, service: str, region: str):
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = boto3.client(
                service,
                region_name=region,
                endpoint_url=self.endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(retries={"mode": "standard", "max_attempts": 3}),
            )
        return self._clients[key]

    def pseudo(self, stack: Stack) -> dict[str, Any]:
        region = self.region(stack)
        return {
            "AWS::AccountId": self.account,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack.name,
            "AWS::NotificationARNs": [],
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{self.account}:stack/{stack.name}/"
            f"{uuid.UUID(hashlib.md5(stack.name.encode()).hexdigest())}",
        }

    def resolver(self, stack: Stack) -> Resolver:
        return Resolver(
            pseudo=self.pseudo(stack),
            ref=lambda logical_id: self.create(stack, logical_id).ref,
            get_att=lambda logical_id, attribute: self._get_att(stack, logical_id, attribute),
            import_value=self._import_value,
        )

    def resolve(self, stack: Stack, value: Any, path: str) -> Any:
        try:
            return self.resolver(stack).resolve(value, path)
        except Unresolvable as exc:
            if str(exc).startswith(stack.name):
                raise
            raise Unresolvable(f"{stack.name}: {exc}") from None

    def _get_att(self, stack: Stack, logical_id: str, attribute: str) -> Any:
        physical = self.create(stack, logical_id)
        if attribute not in physical.attrs:
            raise Unresolvable(
                f"{stack.name}: Fn::GetAtt {logical_id}.{attribute}: {physical.type} "
                f"{physical.ref} has no attribute {attribute} (it has {', '.join(physical.attrs) or 'none'})"
            )
        return physical.attrs[attribute]

    def _import_value(self, export_name: str) -> Any:
        exporter, key = self.assembly.exporter(export_name)
        return self.resolve(exporter, exporter.outputs[key]["Value"], f"Outputs.{key}.Value")

    def physical_name(self, stack: Stack, logical_id: str, limit: int, *, lower: bool = False) -> str:
        suffix = hashlib.sha256(f"{stack.name}/{logical_id}".encode()).hexdigest()[:12].upper()
        name = f"{stack.name}-{logical_id}"[: limit - len(suffix) - 1] + "-" + suffix
        return name.lower() if lower else name

    # ----- deploy / outputs -----------------------------------------------------------------------
    def deploy(self, stack_name: str) -> dict[str, Any]:
        """Create the stack's rehearsed resources in template order, then return its outputs."""
        stack = self.assembly.stack(stack_name)
        for logical_id, resource in stack.resources.items():
            if resource.get("Type") in EAGER_TYPES:
                self.create(stack, logical_id)
        return self.outputs(stack_name)

    def outputs(self, stack_name: str) -> dict[str, Any]:
        """Every output, as ``cdk deploy --outputs-file`` records them for the stack."""
        stack = self.assembly.stack(stack_name)
        return {
            key: self.resolve(stack, output["Value"], f"Outputs.{key}.Value") for key, output in stack.outputs.items()
        }

    def create(self, stack: Stack, logical_id: str) -> Physical:
        key = (stack.name, logical_id)
        if key in self.physical:
            return self.physical[key]
        resource = stack.resources.get(logical_id)
        if resource is None:
            raise Unresolvable(f"{stack.name}: no resource or parameter named {logical_id}")
        if key in self._creating:
            raise Unresolvable(f"{stack.name}: circular reference through {logical_id}")
        type_name = resource["Type"]
        creator = _CREATORS.get(type_name) or (MotoStacks._provider_backed if type_name in PROVIDER_BACKED else None)
        if creator is None:
            raise Unresolvable(
                f"{stack.name}: {logical_id} ({type_name}) is referenced but not rehearsed "
                "(tests/rehearsal/moto_stacks.py creates only what the handlers and outputs need)"
            )
        self._creating.append(key)
        try:
            for dependency in _depends_on(resource):
                if stack.resources.get(dependency, {}).get("Type") in EAGER_TYPES:
                    self.create(stack, dependency)
            physical = creator(self, stack, logical_id, resource)
        finally:
            self._creating.pop()
        self.physical[key] = physical
        self.events.append(f"CREATE_COMPLETE {stack.name}/{logical_id} ({type_name}) {physical.ref}")
        return physical

    def delete(self, stack_name: str, logical_id: str) -> None:
        """Delete a provider-backed custom resource the way CloudFormation does on stack deletion."""
        from tests.rehearsal.provider import ProviderFramework

        stack = self.assembly.stack(stack_name)
        physical = self.physical.get((stack.name, logical_id))
        if physical is None or physical.type not in PROVIDER_BACKED:
            raise ValueError(f"{stack_name}/{logical_id} is not a created provider-backed custom resource")
        framework = ProviderFramework(self, stack, physical.details["ServiceToken"])
        framework.request("Delete", logical_id, physical.type, physical.details, physical_id=physical.ref)
        del self.physical[(stack.name, logical_id)]
        self.events.append(f"DELETE_COMPLETE {stack.name}/{logical_id} ({physical.type}) {physical.ref}")

    # ----- Lambda functions -------------------------------------------------------------------------
    def function_at(self, arn: str) -> LambdaProcess:
        """The (warm) process running the function with this ARN."""
        if arn not in self._functions_by_arn:
            raise Unresolvable(f"no rehearsed Lambda function has the ARN {arn}")
        if arn not in self._processes:
            stack, logical_id = self._functions_by_arn[arn]
            self._processes[arn] = LambdaProcess(
                self.lambda_spec(stack, logical_id), aws_env=aws_environment(self.endpoint, self.region(stack))
            )
        return self._processes[arn]

    def prewarm(self, arn: str) -> None:
        """Start a Python function's process now, so its imports overlap with other work."""
        if arn in self._functions_by_arn and arn not in self._processes:
            stack, logical_id = self._functions_by_arn[arn]
            if str(stack.resources[logical_id]["Properties"].get("Runtime", "")).startswith("python"):
                self.function_at(arn)

    def lambda_spec(self, stack: Stack, logical_id: str) -> LambdaSpec:
        physical = self.create(stack, logical_id)
        props = stack.resources[logical_id]["Properties"]
        path = f"Resources.{logical_id}.Properties"
        environment = self.resolve(stack, props.get("Environment", {}).get("Variables", {}), f"{path}.Environment")
        return LambdaSpec(
            logical_id=f"{stack.name}/{logical_id}",
            name=physical.ref,
            arn=physical.attrs["Arn"],
            handler=props["Handler"],
            runtime=props["Runtime"],
            asset=self.assembly.asset_folder(stack, props["Code"]["S3Key"]),
            timeout=float(props.get("Timeout", 3)),
            environment={k: str(v) for k, v in environment.items()},
        )

    def function_environment(self, arn: str) -> dict[str, Any]:
        stack, logical_id = self._functions_by_arn[arn]
        props = stack.resources[logical_id]["Properties"]
        return {
            "Handler": props.get("Handler"),
            **self.resolve(
                stack,
                props.get("Environment", {}).get("Variables", {}),
                f"Resources.{logical_id}.Properties.Environment",
            ),
        }

    def close(self) -> None:
        for process in self._processes.values():
            process.close()
        self._processes.clear()

    # ----- creators -------------------------------------------------------------------------------
    def _props(self, stack: Stack, logical_id: str, resource: dict[str, Any], *names: str) -> dict[str, Any]:
        """Only the named properties, resolved: resolving one creates only what it refers to."""
        props = resource.get("Properties", {})
        return {n: self.resolve(stack, props[n], f"Resources.{logical_id}.Properties.{n}") for n in names if n in props}

    def _vpc(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        p = self._props(stack, logical_id, resource, "CidrBlock", "EnableDnsHostnames", "EnableDnsSupport", "Tags")
        ec2 = self.client("ec2", self.region(stack))
        vpc = ec2.create_vpc(CidrBlock=p["CidrBlock"])["Vpc"]
        for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
            if attribute in p:
                ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], **{attribute: {"Value": bool(p[attribute])}})
        _tag_ec2(ec2, vpc["VpcId"], p.get("Tags"))
        return Physical(
            resource["Type"],
            vpc["VpcId"],
            {
                "VpcId": vpc["VpcId"],
                "CidrBlock": vpc["CidrBlock"],
                "DefaultSecurityGroup": _default_sg(ec2, vpc["VpcId"]),
            },
        )

    def _subnet(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        p = self._props(stack, logical_id, resource, "VpcId", "CidrBlock", "AvailabilityZone", "Tags")
        ec2 = self.client("ec2", self.region(stack))
        subnet = ec2.create_subnet(VpcId=p["VpcId"], CidrBlock=p["CidrBlock"], AvailabilityZone=p["AvailabilityZone"])[
            "Subnet"
        ]
        _tag_ec2(ec2, subnet["SubnetId"], p.get("Tags"))
        return Physical(
            resource["Type"],
            subnet["SubnetId"],
            {"SubnetId": subnet["SubnetId"], "AvailabilityZone": subnet["AvailabilityZone"], "VpcId": subnet["VpcId"]},
        )

    def _security_group(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        p = self._props(stack, logical_id, resource, "GroupDescription", "GroupName", "VpcId", "Tags")
        ec2 = self.client("ec2", self.region(stack))
        group_id = ec2.create_security_group(
            GroupName=p.get("GroupName") or self.physical_name(stack, logical_id, 255),
            Description=p["GroupDescription"],
            VpcId=p["VpcId"],
        )["GroupId"]
        _tag_ec2(ec2, group_id, p.get("Tags"))
        return Physical(resource["Type"], group_id, {"GroupId": group_id, "VpcId": p["VpcId"]})

    def _bucket(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        p = self._props(stack, logical_id, resource, "BucketName")
        name = p.get("BucketName") or self.physical_name(stack, logical_id, 63, lower=True)
        region = self.region(stack)
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        self.client("s3", region).create_bucket(Bucket=name, **kwargs)
        return Physical(
            resource["Type"],
            name,
            {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
            },
        )

    def _bucket_deployment(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        """What aws-cdk-lib's BucketDeployment handler does for a folder asset: sync it under the prefix."""
        p = self._props(
            stack,
            logical_id,
            resource,
            "SourceObjectKeys",
            "SourceMarkers",
            "DestinationBucketName",
            "DestinationBucketKeyPrefix",
            "Extract",
            "DestinationBucketArn",
            "OutputObjectKeys",
        )
        if any(p.get("SourceMarkers") or []):
            raise Unresolvable(f"{stack.name}: {logical_id}: deploy-time SourceMarkers are not rehearsed")
        if str(p.get("Extract", "true")).lower() != "true":
            raise Unresolvable(f"{stack.name}: {logical_id}: Extract=false is not rehearsed")
        s3 = self.client("s3", self.region(stack))
        prefix = (p.get("DestinationBucketKeyPrefix") or "").strip("/")
        uploaded = []
        for object_key in p["SourceObjectKeys"]:
            folder = self.assembly.asset_folder(stack, object_key)
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    key = "/".join(filter(None, [prefix, path.relative_to(folder).as_posix()]))
                    s3.put_object(Bucket=p["DestinationBucketName"], Key=key, Body=path.read_bytes())
                    uploaded.append(key)
        physical_id = f"aws.cdk.s3deployment.{uuid.uuid4()}"
        keys = p["SourceObjectKeys"] if str(p.get("OutputObjectKeys", "true")).lower() == "true" else []
        return Physical(
            resource["Type"],
            physical_id,
            {"DestinationBucketArn": p.get("DestinationBucketArn"), "SourceObjectKeys": keys},
            {"Uploaded": uploaded},
        )

    def _role(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        p = self._props(
            stack,
            logical_id,
            resource,
            "RoleName",
            "AssumeRolePolicyDocument",
            "Path",
            "Description",
            "Policies",
            "ManagedPolicyArns",
        )
        iam = self.client("iam", "us-east-1")
        name = p.get("RoleName") or self.physical_name(stack, logical_id, 64)
        role = iam.create_role(
            RoleName=name,
            Path=p.get("Path", "/"),
            Description=p.get("Description", ""),
            AssumeRolePolicyDocument=json.dumps(p["AssumeRolePolicyDocument"]),
        )["Role"]
        for policy in p.get("Policies", []):
            iam.put_role_policy(
                RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(policy["PolicyDocument"])
            )
        # ManagedPolicyArns are resolved (so they must be well-formed) but not attached: moto ships
        # only a few AWS managed policies, not e.g. AmazonSageMakerClusterInstanceRolePolicy.
        return Physical(
            resource["Type"],
            name,
            {"Arn": role["Arn"], "RoleId": role["RoleId"]},
            {"ManagedPolicyArns": p.get("ManagedPolicyArns", [])},
        )

    def _state_machine(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        p = self._props(
            stack, logical_id, resource, "StateMachineName", "DefinitionString", "RoleArn", "StateMachineType"
        )
        name = p.get("StateMachineName") or self.physical_name(stack, logical_id, 80)
        arn = self.client("stepfunctions", self.region(stack)).create_state_machine(
            name=name,
            definition=p["DefinitionString"],
            roleArn=p["RoleArn"],
            type=p.get("StateMachineType", "STANDARD"),
        )["stateMachineArn"]
        for state in json.loads(p["DefinitionString"]).get("States", {}).values():
            self.prewarm(str(state.get("Resource", "")))
        return Physical(resource["Type"], arn, {"Arn": arn, "Name": name})

    def _function(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        p = self._props(stack, logical_id, resource, "FunctionName")
        name = p.get("FunctionName") or self.physical_name(stack, logical_id, 64)
        arn = f"arn:aws:lambda:{self.region(stack)}:{self.account}:function:{name}"
        self._functions_by_arn[arn] = (stack, logical_id)
        return Physical(resource["Type"], name, {"Arn": arn})

    def _wait_handle(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        handle = self._new_wait_handle(f"{stack.name}/{logical_id}")
        self.handles[handle.url] = handle
        return Physical(resource["Type"], handle.url)

    def _eks_cluster(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        p = self._props(stack, logical_id, resource, "Name", "Version", "RoleArn", "ResourcesVpcConfig", "Tags")
        name = p.get("Name") or self.physical_name(stack, logical_id, 100)
        vpc = p["ResourcesVpcConfig"]
        cluster = self.client("eks", self.region(stack)).create_cluster(
            name=name,
            version=p["Version"],
            roleArn=p["RoleArn"],
            resourcesVpcConfig={
                "subnetIds": vpc["SubnetIds"],
                "securityGroupIds": vpc.get("SecurityGroupIds", []),
                "endpointPublicAccess": bool(vpc.get("EndpointPublicAccess", True)),
                "endpointPrivateAccess": bool(vpc.get("EndpointPrivateAccess", False)),
            },
            tags={t["Key"]: t["Value"] for t in p.get("Tags", [])},
        )["cluster"]
        if self._on_eks_cluster:
            self._on_eks_cluster(name, self.region(stack))
        return Physical(
            resource["Type"],
            name,
            {
                "Arn": cluster["arn"],
                "Endpoint": cluster["endpoint"],
                "CertificateAuthorityData": cluster["certificateAuthority"]["data"],
            },
        )

    def _provider_backed(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        from tests.rehearsal.provider import ProviderFramework

        properties = self.resolve(stack, resource.get("Properties", {}), f"Resources.{logical_id}.Properties")
        framework = ProviderFramework(self, stack, properties["ServiceToken"])
        response = framework.request("Create", logical_id, resource["Type"], properties)
        return Physical(resource["Type"], response["PhysicalResourceId"], dict(response.get("Data") or {}), properties)

    def _wait_condition(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        """CloudFormation waits for ``Count`` SUCCESS signals; here the poller executions that were started
        are replayed until they finish, then the handle's signals decide."""
        from tests.rehearsal.provider import run_started_executions

        p = self._props(stack, logical_id, resource, "Handle", "Count", "Timeout")
        handle = self.handles.get(p["Handle"])
        if handle is None:
            raise Unresolvable(f"{stack.name}: {logical_id}.Handle is not a rehearsed WaitConditionHandle")
        run_started_executions(self)
        signals = handle.bodies()
        failures = [s for s in signals if s.get("Status") != "SUCCESS"]
        if failures:
            raise DeploymentFailed(
                f"CREATE_FAILED {stack.name}/{logical_id} (AWS::CloudFormation::WaitCondition): "
                f"received FAILURE signal: {failures[0].get('Reason')}"
            )
        if len(signals) < int(p.get("Count", 1)):
            raise DeploymentFailed(
                f"CREATE_FAILED {stack.name}/{logical_id} (AWS::CloudFormation::WaitCondition): "
                f"{len(signals)} of {p.get('Count', 1)} signals after every started poller "
                f"finished; CloudFormation would wait {p.get('Timeout')} s and fail"
            )
        data = {s["UniqueId"]: s.get("Data") for s in signals}
        return Physical(resource["Type"], p["Handle"], {"Data": json.dumps(data)})

    def _prometheus_workspace(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        p = self._props(stack, logical_id, resource, "Alias", "Tags")
        amp = self.client("amp", self.region(stack))
        created = amp.create_workspace(
            **({"alias": p["Alias"]} if "Alias" in p else {}), tags={t["Key"]: t["Value"] for t in p.get("Tags", [])}
        )
        described = amp.describe_workspace(workspaceId=created["workspaceId"])["workspace"]
        return Physical(
            resource["Type"],
            created["workspaceId"],
            {
                "Arn": created["arn"],
                "WorkspaceId": created["workspaceId"],
                "PrometheusEndpoint": described.get("prometheusEndpoint", ""),
            },
        )

    def _eks_addon(self, stack: Stack, logical_id: str, resource: dict) -> Physical:
        p = self._props(
            stack, logical_id, resource, "AddonName", "ClusterName", "ConfigurationValues", "PodIdentityAssociations"
        )
        where = f"CREATE_FAILED {stack.name}/{logical_id} (AWS::EKS::Addon {p['AddonName']})"
        try:
            cluster = self.client("eks", self.region(stack)).describe_cluster(name=p["ClusterName"])["cluster"]
        except self.client("eks", self.region(stack)).exceptions.ResourceNotFoundException:
            raise DeploymentFailed(f"{where}: no EKS cluster {p['ClusterName']!r}") from None
        if "ConfigurationValues" in p:
            try:
                json.loads(p["ConfigurationValues"])
            except ValueError as exc:
                raise DeploymentFailed(f"{where}: ConfigurationValues is not JSON ({exc})") from None
        iam = self.client("iam", "us-east-1")
        for association in p.get("PodIdentityAssociations", []):
            name = association["RoleArn"].rsplit("/", 1)[1]
            trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
            if not any(_trusts_pod_identity_of(st, cluster["arn"]) for st in trust["Statement"]):
                raise DeploymentFailed(
                    f"{where}: role {name} does not let EKS Pod Identity assume it for cluster {cluster['arn']}"
                )
        return Physical(resource["Type"], f"{p['ClusterName']}:{p['AddonName']}", {}, p)


def _trusts_pod_identity_of(statement: dict, cluster_arn: str) -> bool:
    """What EKS Pod Identity needs of a trust statement: Allow, the service principal, AssumeRole and
    TagSession, and any ``aws:SourceArn`` condition naming this cluster."""
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    source_arns = [
        v for c in statement.get("Condition", {}).values() for k, v in c.items() if k.lower() == "aws:sourcearn"
    ]
    return (
        statement.get("Effect") == "Allow"
        and statement.get("Principal", {}).get("Service") == "pods.eks.amazonaws.com"
        and {"sts:AssumeRole", "sts:TagSession"} <= set(actions)
        and all(v == cluster_arn for v in source_arns)
    )


_CREATORS: dict[str, Callable[..., Physical]] = {
    "AWS::EC2::VPC": MotoStacks._vpc,
    "AWS::EC2::Subnet": MotoStacks._subnet,
    "AWS::EC2::SecurityGroup": MotoStacks._security_group,
    "AWS::S3::Bucket": MotoStacks._bucket,
    BUCKET_DEPLOYMENT_TYPE: MotoStacks._bucket_deployment,
    "AWS::IAM::Role": MotoStacks._role,
    "AWS::StepFunctions::StateMachine": MotoStacks._state_machine,
    "AWS::Lambda::Function": MotoStacks._function,
    "AWS::CloudFormation::WaitConditionHandle": MotoStacks._wait_handle,
    "AWS::CloudFormation::WaitCondition": MotoStacks._wait_condition,
    "AWS::EKS::Cluster": MotoStacks._eks_cluster,
    "AWS::APS::Workspace": MotoStacks._prometheus_workspace,
    "AWS::EKS::Addon": MotoStacks._eks_addon,
}


def _depends_on(resource: dict[str, Any]) -> list[str]:
    depends = resource.get("DependsOn", [])
    return [depends] if isinstance(depends, str) else list(depends)


def _tag_ec2(ec2, resource_id: str, tags: list[dict[str, str]] | None) -> None:
    if tags:
        ec2.create_tags(Resources=[resource_id], Tags=[{"Key": t["Key"], "Value": t["Value"]} for t in tags])


def _default_sg(ec2, vpc_id: str) -> str:
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    return groups[0]["GroupId"] if groups else ""
