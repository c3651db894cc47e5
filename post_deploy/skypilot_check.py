"""``check``: ask SkyPilot itself whether it can use the cluster and sees every expected GPU.

Why SkyPilot's own code and not our reading of the nodes: what matters is what SkyPilot's
optimizer will see, and its rules are subtle (one label formatter wins cluster-wide, values must
be lowercase, ``a100`` is not ``A100-80GB``, GPUs must be allocatable). So this step runs, in this
process, the functions behind ``sky check kubernetes`` (port-forward dependencies, allowed
contexts, ``check_credentials`` of the context) and behind ``sky gpus list --infra k8s``
(``get_kubernetes_node_info``, ``realtime_kubernetes_gpu_availability``), then compares what they
report per node with what the node's ``ml.*`` instance type carries (``config.gpu_types``).

Why in-process: the ``sky`` CLI and SDK send every call to an API server and auto-start a local
one (port 46580) that outlives the command; these functions are the server-side implementations
and need none, so nothing is left running. Found while building this step: besides ``socat`` and
``nc``, SkyPilot 0.14.1 runs ``kubectl config view --minify`` while checking a context, so a
missing kubectl disables the context.

Those tools are looked up on this process's PATH, but ``submit`` runs them in the SkyPilot API
server. A server the SDK starts copies the caller's environment (``sky/server/common.py``
``_start_api_server``); one that is already running keeps the PATH it started with, and requests
carry only KUBECONFIG, AWS_* and SKYPILOT_* variables (``sky/server/requests/payloads.py``
``request_body_env_vars``). So when a local server is running, its PATH is read from
``/proc/<pid>/environ`` and the same tools (plus the kubeconfig's exec-auth command) are looked up
there; a remote server, or one whose environment cannot be read, is reported as not verified.

Every problem is reported as one line naming the node or tool and the fix.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from config.gpu_types import ACCELERATOR_LABEL, INSTANCE_TYPE_LABEL, gpu_spec
from post_deploy import autoscaling, placement, task_governance
from post_deploy.common import StepError, add_common_args, emit_json, say
from post_deploy.exit_codes import ExitCode
from post_deploy.kube import kube_api_client, kubeconfig_path
from post_deploy.labels import CLUSTER_NAME_LABEL, GPU_RESOURCE
from post_deploy.outputs import read_outputs
from post_deploy.skypilot_env import skypilot_session

LABEL_FIX = "run `python -m post_deploy label-gpus`"
DEVICE_PLUGIN_FIX = (
    "the NVIDIA device plugin (from the HyperPod dependency Helm chart) is not running on it: "
    "check `kubectl -n kube-system get ds` and the chart's nvidia-device-plugin settings"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class NodeGpus:
    """One HyperPod GPU node: what its instance type carries versus what SkyPilot reports."""

    node: str
    instance_type: str
    expected_accelerator: str
    expected_count: int
    seen_accelerator: str | None = None
    seen_count: int = 0
    problem: str | None = None


@dataclass
class CheckReport:
    kubeconfig: str
    context: str | None
    enabled: bool = False  # `sky check kubernetes` says the context is enabled
    skypilot_message: str | None = None  # its note/reason for the context, ANSI stripped
    problems: list[str] = field(default_factory=list)
    nodes: list[NodeGpus] = field(default_factory=list)
    gpus: dict[str, dict[str, Any]] = field(default_factory=dict)  # what `sky gpus list --infra k8s` shows
    notes: list[str] = field(default_factory=list)  # what could not be verified (not failures)
    api_server: dict[str, Any] = field(default_factory=dict)  # the SkyPilot API server submit will use
    cpu_nodes: list[str] = field(default_factory=list)  # HyperPod nodes whose instance type has no GPU

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _resolve_context(path: str, context: str | None) -> tuple[str, list[str]]:
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    if not any(os.path.isfile(p) for p in path.split(os.pathsep) if p):
        raise StepError(
            ExitCode.USAGE,
            f"kubeconfig {path!r} does not exist (run `python -m post_deploy kubeconfig` first, or pass --kubeconfig)",
        )
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=path)
    except ConfigException as err:
        raise StepError(ExitCode.USAGE, f"cannot read kubeconfig {path!r}: {err}") from None
    names = [c["name"] for c in contexts]
    chosen = context or (current or {}).get("name")
    if not chosen:
        raise StepError(
            ExitCode.SKYPILOT_CHECK,
            f"kubeconfig {path!r} has no current-context and no --context was given; SkyPilot uses the current-context",
        )
    if chosen not in names:
        raise StepError(
            ExitCode.SKYPILOT_CHECK,
            f"context {chosen!r} is missing from kubeconfig {path!r} "
            f"(it has: {', '.join(names) or 'none'}); run "
            "`python -m post_deploy kubeconfig`",
        )
    return chosen, names


def _tool_problems() -> list[str]:
    from sky.provision.kubernetes import utils as kubernetes_utils

    problems = []
    reasons = kubernetes_utils.check_port_forward_mode_dependencies(False)
    if reasons:
        problems.append(
            "SkyPilot's port-forwarding tools are missing from PATH: "
            + " ".join(_ANSI.sub("", r).strip() for r in reasons)
            + " (Debian/Ubuntu: apt-get install -y socat netcat-openbsd)"
        )
    if shutil.which("kubectl") is None:
        problems.append(
            "kubectl is not on PATH: SkyPilot runs `kubectl config view --minify` while checking "
            "a context (and `kubectl port-forward` to reach its clusters)"
        )
    return problems


SERVER_TOOLS = ("socat", "nc", "kubectl")


def _exec_command(path: str, context: str) -> str | None:
    """The exec-auth command the context's user runs (the API server runs it for every request)."""
    import yaml

    first = next((p for p in path.split(os.pathsep) if p and os.path.isfile(p)), None)
    try:
        with open(first or "") as f:
            config = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return None
    ctx = next((c.get("context") or {} for c in config.get("contexts") or [] if c.get("name") == context), {})
    user = next((u.get("user") or {} for u in config.get("users") or [] if u.get("name") == ctx.get("user")), {})
    return (user.get("exec") or {}).get("command")


def _local_api_server_pids(port: int) -> list[int]:
    """PIDs of local SkyPilot API servers on ``port``, matched as the SDK matches them
    (``sky/client/sdk.py`` ``_local_api_server_running``), read from /proc."""
    from sky.client import sdk
    from sky.server import common as server_common

    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "cmdline"), "rb") as f:
                cmdline = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if server_common.API_SERVER_CMD in " ".join(cmdline) and sdk._cmdline_api_server_port(cmdline) == port:
            pids.append(int(entry.name))
    return sorted(pids)


def _process_path(pid: int) -> str:
    with open(f"/proc/{pid}/environ", "rb") as f:
        variables = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
    return variables.get(b"PATH", b"").decode(errors="replace")


def check_api_server_path(exec_command: str | None) -> tuple[list[str], list[str], dict[str, Any]]:
    """(problems, notes, facts) about the tools the SkyPilot API server ``submit`` uses can find."""
    from sky.server import common as server_common

    tools = [*SERVER_TOOLS, *([exec_command] if exec_command else [])]
    url = server_common.get_server_url()
    facts: dict[str, Any] = {"url": url, "local": server_common.is_api_server_local(), "path_verified": False}
    if not facts["local"]:
        return (
            [],
            [f"SkyPilot API server {url} is remote: its PATH was not verified ({', '.join(tools)} must be on it)"],
            facts,
        )
    if not os.path.isdir("/proc"):
        note = (
            f"cannot read a running local SkyPilot API server's PATH here (no /proc): not verified ({', '.join(tools)})"
        )
        return [], [note], facts
    pids = _local_api_server_pids(server_common.get_local_api_server_port())
    facts["pids"] = pids
    if not pids:  # submit's SDK call starts one with this process's environment, checked above
        facts["path_verified"] = True
        return [], [], facts
    try:
        path = _process_path(pids[0])
    except OSError as err:
        return (
            [],
            [f"SkyPilot API server (pid {pids[0]}) is running, but its PATH cannot be read ({err}): not verified"],
            facts,
        )
    facts.update(path=path, path_verified=True)
    missing = [tool for tool in tools if shutil.which(tool, path=path) is None]
    if not missing:
        return [], [], facts
    return (
        [
            f"the running SkyPilot API server (pid {pids[0]}, {url}) cannot find {', '.join(missing)} on its PATH "
            f"({path or 'empty'}): a running server keeps the PATH it was started with, not this shell's; "
            "restart it from a shell that has them (`sky api stop`; the next submit starts one)"
        ],
        [],
        facts,
    )


def controller_home_note(nodes: list[Any]) -> str | None:
    """Whether some Ready EKS system node has the allocatable the managed-jobs controller that
    ``submit --managed`` configures asks for (``placement.jobs_controller_resources``)."""
    from kubernetes.utils.quantity import parse_quantity

    need = {
        "cpu": str(placement.CONTROLLER_CPUS),
        "memory": f"{placement.CONTROLLER_MEMORY_GB}G",
        "ephemeral-storage": f"{placement.CONTROLLER_DISK_GB}G",
    }
    for node in nodes:
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        allocatable = node.status.allocatable or {}
        if (
            ready
            and placement.HYPERPOD_NODE_LABEL not in (node.metadata.labels or {})
            and all(parse_quantity(allocatable.get(k, "0")) >= parse_quantity(v) for k, v in need.items())
        ):
            return None
    return (
        f"no EKS system node has room for the managed-jobs controller ({need['cpu']} CPU, {need['memory']} memory, "
        f"{need['ephemeral-storage']} ephemeral storage allocatable): `submit --managed` would stay Pending; give "
        "eks.system_node_group at least one node (m7i.large or larger)"
    )


def _diagnose(node: Any, expected: NodeGpus) -> str | None:
    """Why SkyPilot does not show this node's GPUs as expected, most fundamental cause first."""
    labels = node.metadata.labels or {}
    allocatable = int(float((node.status.allocatable or {}).get(GPU_RESOURCE, "0")))
    label = labels.get(ACCELERATOR_LABEL)
    if label is None:
        return f"has no {ACCELERATOR_LABEL} label, so SkyPilot cannot tell its GPU type: {LABEL_FIX}"
    if label != expected.expected_accelerator:
        return (
            f"{ACCELERATOR_LABEL}={label}, but SkyPilot needs {expected.expected_accelerator!r} for "
            f"{expected.instance_type}: {LABEL_FIX}"
        )
    if allocatable == 0:
        return f"{GPU_RESOURCE} is not allocatable (0 of {expected.expected_count}): {DEVICE_PLUGIN_FIX}"
    if (expected.seen_accelerator or "").lower() != expected.expected_accelerator:
        return (
            f"SkyPilot reports GPU type {expected.seen_accelerator or 'none'}, expected "
            f"{expected.expected_accelerator.upper()} (another GPU label scheme may win cluster-wide)"
        )
    if allocatable < expected.expected_count:
        return (
            f"only {allocatable} of {expected.expected_count} GPUs allocatable; the device plugin "
            "withdrew the others (unhealthy GPUs?)"
        )
    if expected.seen_count < expected.expected_count:
        return f"SkyPilot counts {expected.seen_count} of {expected.expected_count} GPUs"
    return None


def check_skypilot(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    cluster_name: str | None = None,
    karpenter_groups: tuple[str, ...] = (),
) -> CheckReport:
    """Run SkyPilot's Kubernetes checks for one context and explain every gap.

    Raises StepError for a kubeconfig that cannot be read (USAGE) or a context it lacks.
    """
    path = kubeconfig_path(kubeconfig)
    chosen, _ = _resolve_context(path, context)
    report = CheckReport(kubeconfig=path, context=chosen)

    from sky import clouds, core
    from sky.provision.kubernetes import utils as kubernetes_utils

    with skypilot_session(path):
        report.problems += _tool_problems()
        server_problems, report.notes, report.api_server = check_api_server_path(_exec_command(path, chosen))
        report.problems += server_problems
        allowed = clouds.Kubernetes.existing_allowed_contexts(silent=True)
        if chosen not in allowed:
            report.problems.append(
                f"SkyPilot will not use context {chosen!r}: it uses {', '.join(map(repr, allowed)) or 'no context'} "
                "(the kubeconfig's current-context unless kubernetes.allowed_contexts is set in "
                "~/.sky/config.yaml); run `kubectl config use-context " + chosen + "`"
            )
        try:  # what `sky check kubernetes` runs for each context
            report.enabled, message = kubernetes_utils.check_credentials(chosen, run_optional_checks=True)
        except Exception as err:  # noqa: BLE001 - SkyPilot's own check reports any error as "disabled"
            report.enabled, message = False, str(err)
        report.skypilot_message = _ANSI.sub("", message).strip() if message else None
        if not report.enabled:
            report.problems.append(f"SkyPilot reports context {chosen!r} disabled: {report.skypilot_message}")
            return report

        nodes = kubernetes_utils.get_kubernetes_nodes(context=chosen)
        if note := controller_home_note(nodes):
            report.notes.append(note)
        info = kubernetes_utils.get_kubernetes_node_info(chosen).node_info_dict
        try:
            for gpu in core.realtime_kubernetes_gpu_availability(context=chosen)[0][1]:
                report.gpus[gpu.gpu] = {
                    "capacity": gpu.capacity,
                    "available": gpu.available,
                    "requestable": [int(c) for c in gpu.counts],
                }
        except ValueError:  # "No GPUs found in any Kubernetes clusters": the per-node checks explain why
            pass

    for node in sorted(nodes, key=lambda n: n.metadata.name):
        labels = node.metadata.labels or {}
        if CLUSTER_NAME_LABEL not in labels or (cluster_name and labels[CLUSTER_NAME_LABEL] != cluster_name):
            continue
        spec = gpu_spec(labels.get(INSTANCE_TYPE_LABEL, ""))
        if spec is None:
            report.cpu_nodes.append(node.metadata.name)
            continue
        seen = info.get(node.metadata.name)
        entry = NodeGpus(
            node.metadata.name,
            labels[INSTANCE_TYPE_LABEL],
            spec.accelerator,
            spec.count,
            seen.accelerator_type if seen else None,
            int((seen.total or {}).get("accelerator_count", 0)) if seen else 0,
        )
        entry.problem = _diagnose(node, entry)
        report.nodes.append(entry)
        if entry.problem:
            report.problems.append(f"{entry.node} ({entry.instance_type}): {entry.problem}")
    if karpenter_groups:
        report.notes.append(autoscaling.note(chosen, karpenter_groups, autoscaling.DEFAULT_SCALE_UP_TIMEOUT))
    if not report.nodes and karpenter_groups:
        report.notes.append(
            f"no HyperPod GPU node runs now: normal while Karpenter's groups ({', '.join(karpenter_groups)}) "
            "are at 0; `submit` launches wait for their nodes"
        )
    elif not report.nodes and report.cpu_nodes:
        # A CPU-only HyperPod cluster (the canary's): nothing for the GPU checks; SkyPilot's own
        # check above already said whether it can use the context.
        report.notes.append(
            f"CPU-only HyperPod cluster: {len(report.cpu_nodes)} node(s) without GPUs "
            f"({', '.join(report.cpu_nodes)}); no GPU checks apply"
        )
    elif not report.nodes:
        scope = f"of cluster {cluster_name!r} " if cluster_name else ""
        report.problems.append(
            f"no HyperPod nodes {scope}found in context {chosen!r} "
            f"(nodes labelled {CLUSTER_NAME_LABEL}); "
            "run `python -m post_deploy wait-nodes` first"
        )
    return report


# ----- CLI --------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="verify with SkyPilot that the context is enabled and every HyperPod GPU is visible",
        description="Run SkyPilot's own `sky check kubernetes` and `sky gpus list --infra k8s` logic "
        "in-process (no API server) for the context, and compare the GPUs SkyPilot sees on each "
        "HyperPod node with what its instance type carries. Explains each gap: missing socat/nc/"
        "kubectl, context missing or not SkyPilot's, GPU labels missing or wrong (fix: label-gpus), "
        "nvidia.com/gpu not allocatable (device plugin). Exit code 8 on any gap.",
    )
    add_common_args(parser)
    parser.add_argument(
        "--cluster-name",
        metavar="NAME",
        help="only check nodes of this HyperPod cluster (default: every HyperPod node)",
    )
    parser.add_argument(
        "--karpenter-groups",
        metavar="NAME[,NAME]",
        help="instance groups Karpenter scales from 0 (the HyperPodKarpenterGroups stack output): no GPU node "
        "is then normal",
    )
    parser.add_argument(
        "--outputs",
        metavar="FILE",
        help="cdk deploy --outputs-file JSON: with task governance, also show each team's Kueue queue and "
        "quota (TaskGovernanceTeams; env vars of the same names also work)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = check_skypilot(
            args.kubeconfig,
            args.context,
            cluster_name=getattr(args, "cluster_name", None),
            karpenter_groups=autoscaling.parse_groups(getattr(args, "karpenter_groups", None)),
        )
    except StepError as err:
        say(f"check FAILED: {err.message}")
        emit_json(args, {"step": "check", "ok": False, "exit_code": int(err.code), "problems": [err.message]})
        return err.code
    say(
        f"SkyPilot: context {report.context!r} {'enabled' if report.enabled else 'disabled'}"
        + (f" ({report.skypilot_message})" if report.skypilot_message else "")
    )
    for entry in report.nodes:
        seen = f"{entry.seen_accelerator} x{entry.seen_count}" if entry.seen_accelerator else "no GPUs"
        say(
            f"  {entry.node} ({entry.instance_type}): SkyPilot sees {seen}, expected "
            f"{entry.expected_accelerator.upper()} x{entry.expected_count}{'' if entry.problem else '  ok'}"
        )
    for name, gpu in sorted(report.gpus.items()):
        say(
            f"  {name}: {gpu['capacity']} total, {gpu['available']} free, requestable per node: "
            f"{', '.join(map(str, gpu['requestable'])) or '-'}"
        )
    teams = _team_queues(args, report)
    for note in report.notes:
        say(f"note: {note}")
    for problem in report.problems:
        say(f"problem: {problem}")
    say("check: ok" if report.ok else f"check FAILED: {len(report.problems)} problem(s)")
    emit_json(
        args,
        {
            "step": "check",
            "exit_code": int(ExitCode.OK if report.ok else ExitCode.SKYPILOT_CHECK),
            **report.to_dict(),
            **({"teams": [asdict(t) for t in teams]} if teams is not None else {}),
        },
    )
    return ExitCode.OK if report.ok else ExitCode.SKYPILOT_CHECK


def _team_queues(args: argparse.Namespace, report: CheckReport) -> list[task_governance.TeamQueue] | None:
    """With task governance deployed: print each team's queue and quota; a missing queue is a problem
    (``submit --team`` would wait for an admission that can never come)."""
    governance = task_governance.Governance.from_outputs(read_outputs(getattr(args, "outputs", None)))
    if governance is None:
        return None
    teams = task_governance.team_queues(kube_api_client(args.kubeconfig, report.context), governance)
    say("task governance:")
    for team in teams:
        say(f"  {team.line()}")
        if team.problem:
            report.problems.append(f"task governance team {team.team}: {team.problem}")
    return teams
