"""The network layer: VPC, HyperPod and EKS subnets, NAT, endpoints and the shared EFA security group."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs

from config import AppConfig
from constructs import Construct, checkov_skips
from stacks.log_retention import retention

# Interface endpoints a closed network needs for nodes to join EKS, pull images and report health.
_INTERFACE_ENDPOINTS = {
    "Ec2": ec2.InterfaceVpcEndpointAwsService.EC2,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "Ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    "SsmMessages": ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES,
    "Ec2Messages": ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES,
    "EksAuth": ec2.InterfaceVpcEndpointAwsService.EKS_AUTH,
    "SageMakerApi": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
}
# Only with observability on: the collector's remote write to Amazon Managed Service for Prometheus.
# (The training operator needs sagemaker.api and eks-auth, which the closed network always has.)
PROMETHEUS_ENDPOINT = {"PrometheusWorkspaces": ec2.InterfaceVpcEndpointAwsService.PROMETHEUS_WORKSPACES}

HYPERPOD_SUBNETS = "hyperpod"
EKS_SUBNETS = "eks-control-plane"
PUBLIC_SUBNETS = "public"


class NetworkStack(Stack):
    """VPC shaped for HyperPod: pods take VPC IPs through the VPC CNI, so HyperPod subnets are large."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        self._azs = list(config.network.availability_zones)
        super().__init__(scope, construct_id, **kwargs)
        net = config.network

        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=retention(net.flow_log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        checkov_skips.skip(
            flow_logs,
            "CKV_AWS_158",
            "VPC flow log records are network metadata (addresses, ports, bytes, accept/reject), no payloads; "
            "CloudWatch Logs encrypts them at rest with a service-managed key.",
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(net.vpc_cidr),
            availability_zones=list(net.availability_zones),
            nat_gateways=1 if net.nat_gateways == "single" else len(net.availability_zones),
            # Largest block first so the allocator keeps it aligned.
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name=HYPERPOD_SUBNETS,
                    subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                    cidr_mask=net.hyperpod_subnet_cidr_mask,
                ),
                ec2.SubnetConfiguration(name=PUBLIC_SUBNETS, subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(
                    name=EKS_SUBNETS,
                    subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                    cidr_mask=24,
                ),
            ],
            flow_logs={
                "all": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
            restrict_default_security_group=False,
        )
        for subnet in self.vpc.select_subnets(subnet_group_name=EKS_SUBNETS).subnets:
            Tags.of(subnet).add("kubernetes.io/role/internal-elb", "1")
        for subnet in self.vpc.public_subnets:
            Tags.of(subnet).add("kubernetes.io/role/elb", "1")

        self.vpc.add_gateway_endpoint(
            "S3Endpoint",
            service=ec2.GatewayVpcEndpointAwsService.S3,
            subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)],
        )

        self.security_group = self._efa_security_group(config)
        if net.interface_endpoints:
            self._interface_endpoints(
                net.vpc_cidr, {**_INTERFACE_ENDPOINTS, **(PROMETHEUS_ENDPOINT if config.observability.enabled else {})}
            )

        hyperpod_azs = set(config.hyperpod_azs)
        self.hyperpod_subnets = [
            s
            for s in self.vpc.select_subnets(subnet_group_name=HYPERPOD_SUBNETS).subnets
            if s.availability_zone in hyperpod_azs
        ]
        self.eks_subnets = self.vpc.select_subnets(subnet_group_name=EKS_SUBNETS).subnets
        self._place_by_az_id(config)

    def _place_by_az_id(self, config: AppConfig) -> None:
        """With ``hyperpod.availability_zone_ids``, each HyperPod subnet is created in the AZ id paired with
        its AZ name (same position in the two lists): capacity reservations and training plans name AZ
        ids, and which id an AZ name means differs per account. The name then only labels the subnet for
        CDK; CloudFormation's ``AvailabilityZoneId`` places it without any lookup."""
        ids = config.hyperpod.availability_zone_ids
        if not ids:
            return
        by_name = dict(zip(config.hyperpod_azs, ids, strict=True))
        for subnet in self.hyperpod_subnets:
            cfn_subnet = subnet.node.default_child
            cfn_subnet.add_property_deletion_override("AvailabilityZone")
            cfn_subnet.add_property_override("AvailabilityZoneId", by_name[subnet.availability_zone])

    @property
    def availability_zones(self) -> list[str]:
        """The configured AZs. With an explicit account CDK would otherwise look them up in the account
        (a context lookup), and synth must stay offline."""
        return self._azs

    def _efa_security_group(self, config: AppConfig) -> ec2.SecurityGroup:
        # Egress to the internet is the group's inline allow-all rule. Every rule that references the
        # group itself is an L1 resource with a fixed id: with allow_all_outbound=True the L2 silently
        # drops an added egress rule (aws-cdk issue 38558), which is exactly the self-egress rule EFA
        # needs; and the L2 names self-referencing rules after the peer's construct path, which differs
        # inside the pipeline's Stage and would make the pipeline replace them.
        sg = ec2.SecurityGroup(
            self,
            "HyperPodSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=True,
            description="Shared by EKS and HyperPod: EFA needs all traffic to and from itself",
        )
        group = sg.security_group_id
        ec2.CfnSecurityGroupIngress(
            self,
            "HyperPodSecurityGroupSelfIngress",
            group_id=group,
            ip_protocol="-1",
            source_security_group_id=group,
            description="EFA and node-to-node traffic from itself",
        )
        ec2.CfnSecurityGroupEgress(
            self,
            "HyperPodSecurityGroupSelfEgress",
            group_id=group,
            ip_protocol="-1",
            destination_security_group_id=group,
            description="EFA traffic to itself",
        )
        # The file system this app creates sits on this group (constructs/fsx_lustre): Lustre clients
        # connect to 988 and 1018-1023, and the servers to the clients' 1018-1023.
        if config.network.fsx_lustre_ports or config.storage.fsx.creates_file_system:
            for name, (low, high) in {"FsxLustre": (988, 988), "FsxLustreLnet": (1018, 1023)}.items():
                ec2.CfnSecurityGroupIngress(
                    self,
                    f"HyperPodSecurityGroup{name}Ingress",
                    group_id=group,
                    ip_protocol="tcp",
                    from_port=low,
                    to_port=high,
                    source_security_group_id=group,
                    description="FSx for Lustre",
                )
        return sg

    def _interface_endpoints(self, vpc_cidr: str, endpoints: dict[str, ec2.InterfaceVpcEndpointAwsService]) -> None:
        endpoint_sg = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="Interface endpoints: HTTPS from inside the VPC",
        )
        # The configured CIDR, not the VPC's CidrBlock attribute: cdk-nag's EC23 check cannot evaluate a token
        # and fails the synth.
        endpoint_sg.add_ingress_rule(ec2.Peer.ipv4(vpc_cidr), ec2.Port.tcp(443), "HTTPS from the VPC")
        for name, service in endpoints.items():
            self.vpc.add_interface_endpoint(
                f"{name}Endpoint",
                service=service,
                security_groups=[endpoint_sg],
                subnets=ec2.SubnetSelection(subnet_group_name=EKS_SUBNETS),
                private_dns_enabled=True,
                open=False,  # the rule above already admits the VPC; CDK's own names the CidrBlock token
            )
