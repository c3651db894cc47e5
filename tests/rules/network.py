"""Security-group reachability over synthesized templates, with EKS's and HyperPod's own semantics.

Templates alone do not say which network interface carries which security group, and one group (the
cluster security group EKS creates) is in no template at all. This module supplies both, from AWS's
documentation (EKS user guide "Amazon EKS security group requirements"):

* the cluster security group: ingress all from itself; egress all to 0.0.0.0/0 and to itself. It is
  the ``ClusterSecurityGroupId`` attribute of an ``AWS::EKS::Cluster``.
* the control plane's interfaces carry the cluster group plus ``ResourcesVpcConfig.SecurityGroupIds``;
* managed node groups without a launch template carry only the cluster group (with one, the launch
  template's groups; not modelled, reported as unsupported);
* HyperPod nodes carry only ``VpcConfig.SecurityGroupIds`` of the CreateCluster request
  (``ClusterRequest`` of ``Custom::HyperPodCluster``), and pods (VPC CNI) their node's groups;
* a Lambda function with ``VpcConfig`` carries its own groups; an interface VPC endpoint its own.

Existing resources (``network.existing``, ``eks.existing``) appear in the templates as literal ``sg-``
ids. Their rules are not in any template, so they are passed in as ``existing_groups`` with what the app
assumes and ``make preflight`` checks of them (``existing_security_group`` below: all traffic from and
to itself, all egress); an existing EKS cluster (``existing_cluster_sg``) is modelled with EKS's own
semantics: its cluster group as above, its control plane and its managed nodes carrying that group.

A flow is reachable when some egress rule of the source's groups admits the traffic to the
destination (a rule naming one of its groups, or a CIDR covering the VPC) AND some ingress rule of
the destination's groups admits it from the source. Security groups are stateful, so only the
initiating direction is checked. A group without ``SecurityGroupEgress`` has CloudFormation's
default allow-all egress rule.

Adding a flow (for a feature): add ``Flow`` entries to ``FLOWS`` below (or pass your own list to
``check``), naming the source and destination roles, protocol and port range. A role is a function
from the ``Network`` to a list of ``Interface``; add one to ``ROLES`` when a feature brings a new kind
of interface. For FSx for Lustre (clients and servers talk both ways on 988 and 1018-1023)::

    def fsx_file_systems(net):
        return net.resources_with_groups("AWS::FSx::FileSystem", "SecurityGroupIds")

    ROLES["fsx_file_systems"] = fsx_file_systems
    FLOWS += [
        Flow("HyperPod nodes mount FSx", "hyperpod_nodes", "fsx_file_systems", "tcp", (988, 988), optional=True),
        Flow("HyperPod nodes mount FSx", "hyperpod_nodes", "fsx_file_systems", "tcp", (1018, 1023), optional=True),
        Flow("FSx answers HyperPod nodes", "fsx_file_systems", "hyperpod_nodes", "tcp", (988, 988), optional=True),
        Flow("FSx answers HyperPod nodes", "fsx_file_systems", "hyperpod_nodes", "tcp", (1018, 1023), optional=True),
    ]

Make such a flow required (drop ``optional``) in the feature's own test when the feature is on, so a
missing file system fails instead of passing vacuously.

``optional=True`` means "only where the template has such interfaces"; a required flow whose role
matches nothing fails, so a renamed resource cannot silently empty a check.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

ALL = "-1"
ANY_IPV4 = ipaddress.ip_network("0.0.0.0/0")
_PROTOCOL_NUMBERS = {"6": "tcp", "17": "udp", "1": "icmp"}


@dataclass(frozen=True, order=True)
class Group:
    """A security group: ``stack/logicalId``, or ``stack/logicalId#cluster-sg`` for EKS's cluster group."""

    key: str

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class Rule:
    protocol: str  # "-1", "tcp", "udp", "icmp"
    ports: tuple[int, int]  # inclusive; (0, 65535) for all
    peer_group: Group | None = None
    peer_cidr: ipaddress.IPv4Network | None = None

    def admits(self, protocol: str, ports: tuple[int, int]) -> bool:
        if self.protocol == ALL:
            return True
        if self.protocol != protocol:
            return False
        return self.ports[0] <= ports[0] and ports[1] <= self.ports[1]


@dataclass(frozen=True)
class Interface:
    name: str
    groups: frozenset[Group]


@dataclass
class Network:
    """Every security group in a set of templates, with its ingress and egress rules."""

    templates: Mapping[str, dict]
    # Literal security group ids of existing groups -> (ingress, egress) rules assumed of them.
    existing_groups: Mapping[str, tuple[list[Rule], list[Rule]]] = field(default_factory=dict)
    existing_cluster_sg: str | None = None  # the cluster group of an existing EKS cluster
    ingress: dict[Group, list[Rule]] = field(default_factory=dict)
    egress: dict[Group, list[Rule]] = field(default_factory=dict)
    vpc_cidrs: list[ipaddress.IPv4Network] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._exports = {
            out["Export"]["Name"]: (stack, out["Value"])
            for stack, template in self.templates.items()
            for out in template.get("Outputs", {}).values()
            if isinstance(out.get("Export", {}).get("Name"), str)
        }
        for _, _, props in self.resources("AWS::EC2::VPC"):
            if isinstance(props.get("CidrBlock"), str):
                self.vpc_cidrs.append(ipaddress.ip_network(props["CidrBlock"]))
        for sg_id, (ingress, egress) in self.existing_groups.items():
            self.ingress.setdefault(existing_group(sg_id), []).extend(ingress)
            self.egress.setdefault(existing_group(sg_id), []).extend(egress)
        if self.existing_cluster_sg:
            me = existing_group(self.existing_cluster_sg)
            self.ingress.setdefault(me, []).append(Rule(ALL, (0, 65535), peer_group=me))
            self.egress.setdefault(me, []).extend(
                [Rule(ALL, (0, 65535), peer_cidr=ANY_IPV4), Rule(ALL, (0, 65535), peer_group=me)]
            )
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                self._load(stack, logical_id, resource)

    # --- resolving references -----------------------------------------------------------------

    def group(self, stack: str, value) -> Group:
        """The security group an intrinsic (Ref, GetAtt GroupId/ClusterSecurityGroupId, ImportValue) names,
        or an existing group's literal id."""
        if isinstance(value, str) and value.startswith("sg-"):
            if value not in self.existing_groups and value != self.existing_cluster_sg:
                raise LookupError(f"{stack}: existing group {value} has no assumed rules (pass it in existing_groups)")
            return existing_group(value)
        if isinstance(value, dict) and "Fn::ImportValue" in value:
            name = value["Fn::ImportValue"]
            if name not in self._exports:
                raise LookupError(f"{stack}: import {name} is exported by no template")
            return self.group(*self._exports[name])
        if isinstance(value, dict) and "Ref" in value:
            return self._group_resource(stack, value["Ref"], "GroupId")
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return self._group_resource(stack, logical_id, attribute)
        raise LookupError(f"{stack}: cannot tell which security group {json.dumps(value)} is")

    def _group_resource(self, stack: str, logical_id: str, attribute: str) -> Group:
        resource = self.templates[stack]["Resources"][logical_id]
        if resource["Type"] == "AWS::EC2::SecurityGroup" and attribute == "GroupId":
            return Group(f"{stack}/{logical_id}")
        if resource["Type"] == "AWS::EKS::Cluster" and attribute == "ClusterSecurityGroupId":
            return cluster_security_group(stack, logical_id)
        raise LookupError(f"{stack}/{logical_id} ({resource['Type']}).{attribute} is not a security group id")

    def groups(self, stack: str, values: Iterable) -> frozenset[Group]:
        return frozenset(self.group(stack, v) for v in values)

    # --- rules ----------------------------------------------------------------------------------

    def _load(self, stack: str, logical_id: str, resource: dict) -> None:
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::EC2::SecurityGroup":
            me = Group(f"{stack}/{logical_id}")
            self.ingress.setdefault(me, []).extend(
                self._rule(stack, r, "SourceSecurityGroupId", "CidrIp") for r in props.get("SecurityGroupIngress", [])
            )
            egress = props.get("SecurityGroupEgress")
            self.egress.setdefault(me, []).extend(
                [Rule(ALL, (0, 65535), peer_cidr=ANY_IPV4)]
                if egress is None
                else [self._rule(stack, r, "DestinationSecurityGroupId", "CidrIp") for r in egress]
            )
        elif kind == "AWS::EKS::Cluster":
            me = cluster_security_group(stack, logical_id)
            self.ingress.setdefault(me, []).append(Rule(ALL, (0, 65535), peer_group=me))
            self.egress.setdefault(me, []).extend(
                [Rule(ALL, (0, 65535), peer_cidr=ANY_IPV4), Rule(ALL, (0, 65535), peer_group=me)]
            )
        elif kind == "AWS::EC2::SecurityGroupIngress":
            self.ingress.setdefault(self.group(stack, props["GroupId"]), []).append(
                self._rule(stack, props, "SourceSecurityGroupId", "CidrIp")
            )
        elif kind == "AWS::EC2::SecurityGroupEgress":
            self.egress.setdefault(self.group(stack, props["GroupId"]), []).append(
                self._rule(stack, props, "DestinationSecurityGroupId", "CidrIp")
            )

    def _rule(self, stack: str, props: Mapping, group_key: str, cidr_key: str) -> Rule:
        protocol = str(props["IpProtocol"])
        protocol = _PROTOCOL_NUMBERS.get(protocol, protocol)
        ports = (0, 65535) if protocol == ALL else (int(props["FromPort"]), int(props["ToPort"]))
        if group_key in props:
            return Rule(protocol, ports, peer_group=self.group(stack, props[group_key]))
        return Rule(protocol, ports, peer_cidr=ipaddress.ip_network(self._cidr(stack, props.get(cidr_key))))

    def _cidr(self, stack: str, value) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "CidrBlock":
            vpc = self.templates[stack]["Resources"][value["Fn::GetAtt"][0]]
            if vpc["Type"] == "AWS::EC2::VPC" and isinstance(vpc["Properties"].get("CidrBlock"), str):
                return vpc["Properties"]["CidrBlock"]
        raise LookupError(f"{stack}: cannot tell which CIDR block {json.dumps(value)} is")

    # --- interfaces -----------------------------------------------------------------------------

    def resources(self, kind: str):
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource["Type"] == kind:
                    yield stack, logical_id, resource.get("Properties", {})

    def resources_with_groups(self, kind: str, *path: str) -> list[Interface]:
        """Interfaces of every ``kind`` resource whose security groups sit at ``path`` in its properties."""
        found = []
        for stack, logical_id, props in self.resources(kind):
            value = props
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            if value:
                found.append(Interface(f"{stack}/{logical_id}", self.groups(stack, value)))
        return found

    # --- evaluation -----------------------------------------------------------------------------

    def covers_vpc(self, cidr: ipaddress.IPv4Network) -> bool:
        return any(cidr.supernet_of(vpc) for vpc in self.vpc_cidrs) or cidr == ANY_IPV4

    def egress_allows(self, source: Interface, destination: Interface, protocol: str, ports: tuple[int, int]) -> bool:
        return any(
            rule.admits(protocol, ports)
            and (
                rule.peer_group in destination.groups
                or (rule.peer_cidr is not None and self.covers_vpc(rule.peer_cidr))
            )
            for group in source.groups
            for rule in self.egress.get(group, [])
        )

    def ingress_allows(self, source: Interface, destination: Interface, protocol: str, ports: tuple[int, int]) -> bool:
        return any(
            rule.admits(protocol, ports)
            and (rule.peer_group in source.groups or (rule.peer_cidr is not None and self.covers_vpc(rule.peer_cidr)))
            for group in destination.groups
            for rule in self.ingress.get(group, [])
        )


def cluster_security_group(stack: str, cluster_logical_id: str) -> Group:
    return Group(f"{stack}/{cluster_logical_id}#cluster-sg")


def existing_group(sg_id: str) -> Group:
    return Group(f"existing/{sg_id}")


def existing_security_group(sg_id: str) -> tuple[list[Rule], list[Rule]]:
    """What the app assumes of ``network.existing.security_group_id`` and ``make preflight`` checks
    (``post_deploy/preflight_checks.py``): all traffic from itself; all traffic to itself and to anywhere."""
    me = existing_group(sg_id)
    return [Rule(ALL, (0, 65535), peer_group=me)], [
        Rule(ALL, (0, 65535), peer_group=me),
        Rule(ALL, (0, 65535), peer_cidr=ANY_IPV4),
    ]


# --- roles: which interfaces carry which groups -------------------------------------------------


def control_plane(net: Network) -> list[Interface]:
    existing = (
        # Its additional groups are unknown: the cluster group alone is the least it carries.
        [Interface("existing cluster control plane", frozenset({existing_group(net.existing_cluster_sg)}))]
        if net.existing_cluster_sg
        else []
    )
    return existing + [
        Interface(
            f"{stack}/{logical_id} control plane",
            frozenset({cluster_security_group(stack, logical_id)})
            | net.groups(stack, props.get("ResourcesVpcConfig", {}).get("SecurityGroupIds", [])),
        )
        for stack, logical_id, props in net.resources("AWS::EKS::Cluster")
    ]


def system_nodes(net: Network) -> list[Interface]:
    # An existing cluster's own managed nodes (no launch template) carry only its cluster group.
    found = (
        [Interface("existing cluster managed nodes", frozenset({existing_group(net.existing_cluster_sg)}))]
        if net.existing_cluster_sg
        else []
    )
    for stack, logical_id, props in net.resources("AWS::EKS::Nodegroup"):
        if "LaunchTemplate" in props:
            raise NotImplementedError(f"{stack}/{logical_id}: node groups with a launch template are not modelled")
        cluster = props["ClusterName"]
        if not (isinstance(cluster, dict) and "Ref" in cluster):
            raise LookupError(f"{stack}/{logical_id}: ClusterName {json.dumps(cluster)} is not a Ref to a cluster")
        found.append(Interface(f"{stack}/{logical_id}", frozenset({cluster_security_group(stack, cluster["Ref"])})))
    return found


def hyperpod_nodes(net: Network) -> list[Interface]:
    found = []
    for stack, logical_id, props in net.resources("Custom::HyperPodCluster"):
        request = parse_json_with_intrinsics(props["ClusterRequest"])
        groups = set(net.groups(stack, request["VpcConfig"]["SecurityGroupIds"]))
        for group in request["InstanceGroups"]:
            override = group.get("OverrideVpcConfig")
            name = f"{stack}/{logical_id} group {group['InstanceGroupName']}"
            found.append(
                Interface(name, net.groups(stack, override["SecurityGroupIds"]) if override else frozenset(groups))
            )
    return found


def vpc_lambdas(net: Network) -> list[Interface]:
    return net.resources_with_groups("AWS::Lambda::Function", "VpcConfig", "SecurityGroupIds")


def interface_endpoints(net: Network) -> list[Interface]:
    return net.resources_with_groups("AWS::EC2::VPCEndpoint", "SecurityGroupIds")


ROLES: dict[str, Callable[[Network], list[Interface]]] = {
    "control_plane": control_plane,
    "system_nodes": system_nodes,
    "hyperpod_nodes": hyperpod_nodes,
    "vpc_lambdas": vpc_lambdas,
    "interface_endpoints": interface_endpoints,
}


def parse_json_with_intrinsics(value) -> dict:
    """A JSON document CDK wrote as ``Fn::Join`` of strings and tokens (``stack.to_json_string``), with
    each token back in place as its intrinsic."""
    if isinstance(value, str):
        return json.loads(value)
    delimiter, parts = value["Fn::Join"]
    tokens: list = []
    text = delimiter.join(p if isinstance(p, str) else _placeholder(tokens, p) for p in parts)

    def restore(node):
        if isinstance(node, str):
            m = re.fullmatch(r"__TOKEN_(\d+)__", node)
            return tokens[int(m[1])] if m else node
        if isinstance(node, list):
            return [restore(n) for n in node]
        if isinstance(node, dict):
            return {k: restore(v) for k, v in node.items()}
        return node

    return restore(json.loads(text))


def _placeholder(tokens: list, token) -> str:
    tokens.append(token)
    return f"__TOKEN_{len(tokens) - 1}__"


# --- the flows the system needs -----------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    name: str
    source: str  # a key of ROLES
    destination: str  # a key of ROLES
    protocol: str  # "-1" (all traffic), "tcp", "udp"
    ports: tuple[int, int] = (0, 65535)
    optional: bool = False  # True: only where the templates have interfaces of both roles

    def describe(self) -> str:
        what = "all traffic" if self.protocol == ALL else f"{self.protocol}/{_ports(self.ports)}"
        return f"{self.name} ({what})"


def _ports(ports: tuple[int, int]) -> str:
    return str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


DNS = (53, 53)
KUBELET = (10250, 10250)
HTTPS = (443, 443)
# Admission webhooks listen on whatever port their pod chooses (443, 8443, 9443, ...).
WEBHOOK_PORTS = (1025, 65535)

FLOWS: list[Flow] = [
    # coredns runs wherever the scheduler puts it: on system nodes and, when they are busy or absent,
    # on HyperPod nodes. Every pod must reach it.
    Flow("HyperPod pods resolve names at coredns on system nodes", "hyperpod_nodes", "system_nodes", "udp", DNS),
    Flow("HyperPod pods resolve names at coredns on system nodes", "hyperpod_nodes", "system_nodes", "tcp", DNS),
    Flow("HyperPod pods resolve names at coredns on HyperPod nodes", "hyperpod_nodes", "hyperpod_nodes", "udp", DNS),
    Flow("HyperPod pods resolve names at coredns on HyperPod nodes", "hyperpod_nodes", "hyperpod_nodes", "tcp", DNS),
    Flow("system pods resolve names at coredns on HyperPod nodes", "system_nodes", "hyperpod_nodes", "udp", DNS),
    Flow("system pods resolve names at coredns on HyperPod nodes", "system_nodes", "hyperpod_nodes", "tcp", DNS),
    # Pods talk to services and webhooks on the other kind of node.
    Flow("HyperPod pods reach pods on system nodes", "hyperpod_nodes", "system_nodes", ALL),
    Flow("system pods reach pods on HyperPod nodes", "system_nodes", "hyperpod_nodes", ALL),
    # EFA and NCCL between HyperPod nodes, across instance groups too.
    Flow("HyperPod nodes exchange EFA/NCCL traffic", "hyperpod_nodes", "hyperpod_nodes", ALL),
    # The API server calls kubelets (logs, exec, port-forward) and admission webhooks in pods. Task
    # governance adds no flow of its own: Kueue's admission webhooks and any API it serves are pods the
    # control plane reaches on an unprivileged port through these same rules.
    Flow("control plane reaches kubelet on system nodes", "control_plane", "system_nodes", "tcp", KUBELET),
    Flow("control plane reaches kubelet on HyperPod nodes", "control_plane", "hyperpod_nodes", "tcp", KUBELET),
    Flow("control plane reaches webhook pods on system nodes", "control_plane", "system_nodes", "tcp", HTTPS),
    Flow("control plane reaches webhook pods on system nodes", "control_plane", "system_nodes", "tcp", WEBHOOK_PORTS),
    Flow("control plane reaches webhook pods on HyperPod nodes", "control_plane", "hyperpod_nodes", "tcp", HTTPS),
    Flow(
        "control plane reaches webhook pods on HyperPod nodes", "control_plane", "hyperpod_nodes", "tcp", WEBHOOK_PORTS
    ),
    # Everything that talks to Kubernetes reaches the API server's private endpoint.
    Flow("system nodes reach the API server", "system_nodes", "control_plane", "tcp", HTTPS),
    Flow("HyperPod nodes reach the API server", "hyperpod_nodes", "control_plane", "tcp", HTTPS),
    Flow("VPC Lambdas reach the API server", "vpc_lambdas", "control_plane", "tcp", HTTPS),
    # A closed network: AWS APIs through interface endpoints.
    Flow("HyperPod nodes reach interface endpoints", "hyperpod_nodes", "interface_endpoints", "tcp", HTTPS, True),
    Flow("system nodes reach interface endpoints", "system_nodes", "interface_endpoints", "tcp", HTTPS, True),
    Flow("VPC Lambdas reach interface endpoints", "vpc_lambdas", "interface_endpoints", "tcp", HTTPS, True),
]

# Observability (constructs/observability): the add-on's OpenTelemetry collector runs on a system or a
# HyperPod node and scrapes every node's kubelet (cAdvisor, /metrics), node exporter (Prometheus default
# 9100; AWS's EFA node exporter is a fork listening on the same port) and, on GPU nodes, NVIDIA's DCGM
# exporter (default listener :9400, NVIDIA dcgm-exporter reference). Checked for the default templates too:
# the add-on can be switched on without touching a security group.
NODE_EXPORTER = (9100, 9100)
DCGM_EXPORTER = (9400, 9400)
OBSERVABILITY_FLOWS: list[Flow] = [
    Flow(f"{where} collector scrapes {what} on {label}", src, dest, "tcp", ports)
    for where, src in (("system-node", "system_nodes"), ("HyperPod-node", "hyperpod_nodes"))
    for dest, label, targets in (
        (
            "hyperpod_nodes",
            "HyperPod nodes",
            (("kubelet", KUBELET), ("node exporter", NODE_EXPORTER), ("DCGM exporter", DCGM_EXPORTER)),
        ),
        ("system_nodes", "system nodes", (("kubelet", KUBELET), ("node exporter", NODE_EXPORTER))),
    )
    for what, ports in targets
]
FLOWS += OBSERVABILITY_FLOWS


def check(
    templates: Mapping[str, dict],
    flows: Iterable[Flow] = FLOWS,
    existing_groups: Mapping[str, tuple[list[Rule], list[Rule]]] | None = None,
    existing_cluster_sg: str | None = None,
) -> list[str]:
    """One line per (flow, source interface, destination interface) the security groups block."""
    net = Network(templates, existing_groups=existing_groups or {}, existing_cluster_sg=existing_cluster_sg)
    interfaces = {role: find(net) for role, find in ROLES.items()}
    problems = []
    for flow in flows:
        sources, destinations = interfaces[flow.source], interfaces[flow.destination]
        if not sources or not destinations:
            if not flow.optional:
                missing = flow.source if not sources else flow.destination
                problems.append(f"{flow.describe()}: the templates have no {missing} interfaces")
            continue
        for source in sources:
            for destination in destinations:
                problems.extend(_blocked(net, flow, source, destination))
    return problems


def _blocked(net: Network, flow: Flow, source: Interface, destination: Interface) -> list[str]:
    where = f"{flow.describe()}: {source.name} [{_names(source)}] -> {destination.name} [{_names(destination)}]"
    out = []
    if not net.egress_allows(source, destination, flow.protocol, flow.ports):
        out.append(f"{where}: no egress rule of [{_names(source)}] admits it")
    if not net.ingress_allows(source, destination, flow.protocol, flow.ports):
        out.append(f"{where}: no ingress rule of [{_names(destination)}] admits it from [{_names(source)}]")
    return out


def _names(interface: Interface) -> str:
    return ", ".join(sorted(str(g) for g in interface.groups))
