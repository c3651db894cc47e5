"""The network layer: subnet sizes, NAT, endpoints, flow logs and the EFA security group rules."""

from __future__ import annotations

import ipaddress

import aws_cdk as cdk
from aws_cdk.assertions import Match, Template

from stacks.network import NetworkStack
from tests.conftest import make_config


def _template(**overrides) -> Template:
    config = make_config(**overrides)
    app = cdk.App()
    stack = NetworkStack(app, "Net", config=config, env=cdk.Environment(region=config.region))
    return Template.from_stack(stack)


def _subnets_by_name(template: Template) -> dict[str, list[ipaddress.IPv4Network]]:
    out: dict[str, list] = {}
    for res in template.find_resources("AWS::EC2::Subnet").values():
        props = res["Properties"]
        name = next(t["Value"] for t in props["Tags"] if t["Key"] == "aws-cdk:subnet-name")
        out.setdefault(name, []).append(ipaddress.ip_network(props["CidrBlock"]))
    return out


def test_hyperpod_subnets_are_large_and_eks_subnets_small():
    subnets = _subnets_by_name(_template())
    assert [n.prefixlen for n in subnets["hyperpod"]] == [18, 18]
    assert {n.prefixlen for n in subnets["eks-control-plane"]} == {24}
    assert {n.prefixlen for n in subnets["public"]} == {24}
    every = [n for nets in subnets.values() for n in nets]
    assert all(ipaddress.ip_network("10.192.0.0/16").supernet_of(n) for n in every)
    assert not any(a.overlaps(b) for i, a in enumerate(every) for b in every[i + 1 :])


def test_subnets_span_exactly_the_configured_azs():
    template = _template()
    azs = {r["Properties"]["AvailabilityZone"] for r in template.find_resources("AWS::EC2::Subnet").values()}
    assert azs == {"us-east-1a", "us-east-1b"}


def test_one_nat_gateway_by_default_and_one_per_az_on_request():
    _template().resource_count_is("AWS::EC2::NatGateway", 1)
    _template(**{"network.nat_gateways": "per_az"}).resource_count_is("AWS::EC2::NatGateway", 2)


def test_eks_subnets_are_tagged_for_internal_load_balancers():
    template = _template()
    template.resource_properties_count_is(
        "AWS::EC2::Subnet",
        Match.object_like({"Tags": Match.array_with([{"Key": "kubernetes.io/role/internal-elb", "Value": "1"}])}),
        2,
    )


def test_s3_gateway_endpoint_serves_every_private_route_table():
    template = _template()
    endpoints = template.find_resources("AWS::EC2::VPCEndpoint")
    gateways = [e for e in endpoints.values() if e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"]
    assert len(gateways) == 1
    # Two private groups (hyperpod, eks-control-plane) in two AZs.
    assert len(gateways[0]["Properties"]["RouteTableIds"]) == 4


def test_interface_endpoints_only_when_asked():
    assert not [
        e
        for e in _template().find_resources("AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    ]
    closed = _template(**{"network.interface_endpoints": "true"})
    interface = [
        e
        for e in closed.find_resources("AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    ]
    assert len(interface) == 11
    assert all(e["Properties"]["PrivateDnsEnabled"] for e in interface)


def test_flow_logs_capture_all_traffic_to_a_log_group_with_retention():
    template = _template()
    template.has_resource_properties(
        "AWS::EC2::FlowLog", {"TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"}
    )
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})


def _sg_rules(template: Template):
    sgs = {k: v for k, v in template.find_resources("AWS::EC2::SecurityGroup").items() if "HyperPodSecurityGroup" in k}
    ((sg_id, sg),) = sgs.items()
    ingress = [r["Properties"] for r in template.find_resources("AWS::EC2::SecurityGroupIngress").values()]
    egress = [r["Properties"] for r in template.find_resources("AWS::EC2::SecurityGroupEgress").values()]
    return sg_id, sg["Properties"], ingress, egress


def test_efa_security_group_allows_all_traffic_to_and_from_itself_and_egress_to_internet():
    # Without the FSx file system (storage.fsx off), which adds the Lustre ports (test below).
    sg_id, props, ingress, egress = _sg_rules(_template(**{"storage.fsx.enabled": "false"}))
    self_ref = {"Fn::GetAtt": [sg_id, "GroupId"]}
    assert [(r["IpProtocol"], r["SourceSecurityGroupId"]) for r in ingress] == [("-1", self_ref)]
    # The self-egress rule is the one CDK drops silently when allow_all_outbound=True.
    assert [(r["IpProtocol"], r["DestinationSecurityGroupId"]) for r in egress] == [("-1", self_ref)]
    assert [(e["IpProtocol"], e["CidrIp"]) for e in props["SecurityGroupEgress"]] == [("-1", "0.0.0.0/0")]


def test_fsx_lustre_ports_are_opened_when_the_app_creates_the_file_system():
    sg_id, _, ingress, _ = _sg_rules(_template())
    ports = {(r["FromPort"], r["ToPort"]) for r in ingress if r["IpProtocol"] == "tcp"}
    assert ports == {(988, 988), (1018, 1023)}


def test_fsx_lustre_ports_are_opened_from_itself_when_asked():
    sg_id, _, ingress, _ = _sg_rules(_template(**{"network.fsx_lustre_ports": "true"}))
    ports = {(r["FromPort"], r["ToPort"]) for r in ingress if r["IpProtocol"] == "tcp"}
    assert ports == {(988, 988), (1018, 1023)}
    assert all(r["SourceSecurityGroupId"] == {"Fn::GetAtt": [sg_id, "GroupId"]} for r in ingress)


def test_security_group_rule_ids_do_not_depend_on_where_the_stack_is_nested():
    # The pipeline deploys the same stacks inside a Stage; rule ids must match the direct deploy's.
    config = make_config()
    direct = NetworkStack(cdk.App(), "Net", config=config, env=cdk.Environment(region=config.region))
    stage = cdk.Stage(cdk.App(), "Deploy")
    staged = NetworkStack(stage, "Net", config=config, env=cdk.Environment(region=config.region))
    assert set(Template.from_stack(direct).to_json()["Resources"]) == set(
        Template.from_stack(staged).to_json()["Resources"]
    )


def test_hyperpod_subnets_follow_hyperpod_availability_zones():
    config = make_config(**{"hyperpod.availability_zones": "[us-east-1b]"})
    stack = NetworkStack(cdk.App(), "Net", config=config, env=cdk.Environment(region=config.region))
    assert [s.availability_zone for s in stack.hyperpod_subnets] == ["us-east-1b"]
