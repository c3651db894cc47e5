"""Every flow the cluster needs is allowed by the security groups in the synthesized templates
(evaluator and flow table: tests/rules/network.py)."""

from __future__ import annotations

import copy
import json

import pytest

from tests.app.conftest import run_cdk_synth
from tests.rules import network

# The two rules stacks/eks.py adds between the node kinds (finding 2 of issue 8).
NODE_KIND_RULES = ("ClusterSecurityGroupFromHyperPodNodes", "HyperPodSecurityGroupFromSystemNodes")


def test_every_flow_the_cluster_needs_is_allowed_by_the_default_templates(templates):
    assert network.check(templates) == []


def test_each_role_finds_the_interfaces_eks_and_hyperpod_give_their_groups(templates):
    net = network.Network(templates)
    (plane,) = network.control_plane(net)
    (nodes,) = network.system_nodes(net)
    (hyperpod,) = network.hyperpod_nodes(net)
    hyperpod_sg = network.Group("hyperpod-sky-network/HyperPodSecurityGroup1A747A0A")
    cluster_sg = network.cluster_security_group("hyperpod-sky-eks", "ClusterEB0386A7")
    assert plane.groups == {cluster_sg, hyperpod_sg}
    assert nodes.groups == {cluster_sg}
    assert hyperpod.groups == {hyperpod_sg}
    assert {i.groups for i in network.vpc_lambdas(net)} == {frozenset({hyperpod_sg})}


def test_without_the_node_kind_rules_hyperpod_pods_cannot_reach_coredns(templates):
    # The templates as they were before issue 8: nothing between the cluster group and the HyperPod group.
    before = copy.deepcopy(templates)
    for rule in NODE_KIND_RULES:
        del before["hyperpod-sky-eks"]["Resources"][rule]
    problems = network.check(before)
    dns = [p for p in problems if p.startswith("HyperPod pods resolve names at coredns on system nodes (udp/53)")]
    assert dns == [
        "HyperPod pods resolve names at coredns on system nodes (udp/53): "
        "hyperpod-sky-hyperpod/ClusterEB0386A7 group worker-group-1 [hyperpod-sky-network/HyperPodSecurityGroup1A747A0A]"
        " -> hyperpod-sky-eks/ClusterNodegroupSystemNodes9C3907F1 [hyperpod-sky-eks/ClusterEB0386A7#cluster-sg]: "
        "no ingress rule of [hyperpod-sky-eks/ClusterEB0386A7#cluster-sg] admits it from "
        "[hyperpod-sky-network/HyperPodSecurityGroup1A747A0A]"
    ]
    # The control plane carries both groups, so it alone still works: the deploy would succeed.
    assert not [p for p in problems if p.startswith("control plane")]
    assert any(p.startswith("system pods resolve names at coredns on HyperPod nodes (udp/53)") for p in problems)


def test_egress_is_evaluated_on_the_source(templates):
    # HyperPod group without its allow-all egress rule: only its self rule remains.
    closed = copy.deepcopy(templates)
    sg = closed["hyperpod-sky-network"]["Resources"]["HyperPodSecurityGroup1A747A0A"]["Properties"]
    sg["SecurityGroupEgress"] = [{"CidrIp": "255.255.255.255/32", "IpProtocol": "icmp", "FromPort": 252, "ToPort": 86}]
    problems = network.check(closed)
    assert any(
        p.startswith("HyperPod pods resolve names at coredns on system nodes (udp/53)")
        and p.endswith("no egress rule of [hyperpod-sky-network/HyperPodSecurityGroup1A747A0A] admits it")
        for p in problems
    )
    # The control plane carries the HyperPod group, which still reaches itself: API server stays reachable.
    assert not [p for p in problems if p.startswith("HyperPod nodes reach the API server")]


def test_a_required_flow_whose_role_matches_nothing_fails(templates):
    without_hyperpod = {k: v for k, v in templates.items() if k != "hyperpod-sky-hyperpod"}
    problems = network.check(without_hyperpod)
    assert (
        "HyperPod nodes exchange EFA/NCCL traffic (all traffic): the templates have no hyperpod_nodes interfaces"
        in problems
    )


def test_optional_flows_apply_only_where_their_interfaces_exist(templates):
    optional = [f for f in network.FLOWS if f.optional]
    assert optional and network.check(templates, optional) == []


@pytest.mark.parametrize(
    ("protocol", "ports", "allowed"),
    [("tcp", (443, 443), True), ("tcp", (444, 444), False), ("udp", (443, 443), False), ("tcp", (440, 443), False)],
)
def test_a_port_rule_admits_only_its_protocol_and_range(protocol, ports, allowed):
    assert network.Rule("tcp", (443, 443), peer_cidr=network.ANY_IPV4).admits(protocol, ports) is allowed


def test_a_closed_network_reaches_its_interface_endpoints(tmp_path):
    result = run_cdk_synth(tmp_path, "-c", "network.interface_endpoints=true")
    assert result.returncode == 0, result.stderr
    closed = {
        p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in tmp_path.glob("*.template.json")
    }
    net = network.Network(closed)
    assert len(network.interface_endpoints(net)) == 11
    assert network.check(closed) == []


def _required(flows):
    return [network.Flow(f.name, f.source, f.destination, f.protocol, f.ports) for f in flows]


def test_hyperpod_nodes_and_the_file_system_reach_each_other_on_the_lustre_ports(templates):
    net = network.Network(templates)
    (fs,) = network.fsx_file_systems(net)
    assert fs.groups == {network.Group("hyperpod-sky-network/HyperPodSecurityGroup1A747A0A")}
    assert network.check(templates, _required(network.FSX_FLOWS)) == []


def test_the_lustre_port_rules_alone_carry_the_fsx_flows(templates):
    # Without the EFA all-traffic self rule, the 988 and 1018-1023 rules still admit Lustre...
    no_efa_rule = copy.deepcopy(templates)
    del no_efa_rule["hyperpod-sky-network"]["Resources"]["HyperPodSecurityGroupSelfIngress"]
    assert network.check(no_efa_rule, _required(network.FSX_FLOWS)) == []
    # ...and without them too, every FSx flow is blocked.
    for rule in ("HyperPodSecurityGroupFsxLustreIngress", "HyperPodSecurityGroupFsxLustreLnetIngress"):
        del no_efa_rule["hyperpod-sky-network"]["Resources"][rule]
    problems = network.check(no_efa_rule, _required(network.FSX_FLOWS))
    assert len(problems) == len(network.FSX_FLOWS)
    assert problems[0].startswith("HyperPod nodes mount FSx (tcp/988): ")


def test_without_a_file_system_the_fsx_flows_fail_when_required(templates):
    none = copy.deepcopy(templates)
    none["hyperpod-sky-storage"]["Resources"] = {
        k: v for k, v in none["hyperpod-sky-storage"]["Resources"].items() if v["Type"] != "AWS::FSx::FileSystem"
    }
    problems = network.check(none, _required(network.FSX_FLOWS[:1]))
    assert problems == ["HyperPod nodes mount FSx (tcp/988): the templates have no fsx_file_systems interfaces"]
