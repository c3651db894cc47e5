"""``submit``: validate SkyPilot tasks offline, then run them on the HyperPod cluster and pass the
job's exit code through.

Every task is checked before any is launched (``task_validation``), so a typo in the third task
does not surface after the first one has held GPUs for an hour. Launches go through the SkyPilot
Python SDK: ``sky.launch`` (or ``sky.jobs.launch`` with ``--managed``, for long training that
should survive the submitter), ``sky.stream_and_get`` for the provisioning log and
``sky.tail_logs(follow=True)``, whose return value is the job's exit code (0 ok, 100 failed,
101-103 not finished/not found/cancelled). That code becomes this command's exit code unchanged,
which is why every ``ExitCode`` stays below 100.

SkyPilot output goes to stderr so ``--json`` leaves stdout to the summary. If this command had to
start the local SkyPilot API server, it stops it again (``sky.api_stop()``): a CI step must not
leave a server process behind. A server that was already running, or a remote one, is left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from post_deploy import autoscaling, placement, task_governance
from post_deploy.common import StepError, add_common_args, emit_json, first_line, say
from post_deploy.exit_codes import ExitCode
from post_deploy.outputs import read_outputs
from post_deploy.skypilot_env import (
    local_api_server_lifecycle,
    sky_output_to_stderr,
    sky_stream,
    skypilot_environment,
)
from post_deploy.task_validation import DEFAULT_K8S_VERSION, TaskInvalid, ValidatedTask, validate_task_file

_INVALID_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


@dataclass
class TaskResult:
    task: str
    cluster: str | None
    managed: bool
    job_id: int | None = None
    exit_code: int = 0
    torn_down: bool = False
    error: str | None = None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="validate SkyPilot task YAMLs offline, launch them on HyperPod, exit with the job's code",
        description="Validate every task offline (SkyPilot schema incl. config:, pod_config against the "
        "Kubernetes schema), then launch each in order via the SkyPilot SDK, stream its logs and exit "
        "with the first non-zero job exit code (SkyPilot: 100 failed, 101 not finished, 102 not found, "
        "103 cancelled).",
    )
    add_common_args(parser)
    parser.add_argument("tasks", nargs="+", metavar="TASK.yaml", help="SkyPilot task files, run in order")
    parser.add_argument(
        "--cluster-name", help="SkyPilot cluster to launch on (default: the task's name, else its file name)"
    )
    parser.add_argument(
        "--down",
        action="store_true",
        help="tear the SkyPilot cluster down after the job (also sets SkyPilot's autodown)",
    )
    parser.add_argument(
        "--managed",
        action="store_true",
        help="run as a SkyPilot managed job (sky.jobs.launch): recovers from preemption, cleans up by itself",
    )
    parser.add_argument(
        "--karpenter-groups",
        metavar="NAME[,NAME]",
        help="instance groups Karpenter scales from 0 (the HyperPodKarpenterGroups stack output): SkyPilot then "
        "waits for their nodes instead of failing; needs --context",
    )
    parser.add_argument(
        "--cluster-accelerators",
        metavar="NAME[,NAME]",
        help="with --karpenter-groups: the accelerators the instance groups offer (the HyperPodAccelerators stack "
        "output); a task listing several is narrowed to these",
    )
    parser.add_argument(
        "--scale-up-timeout",
        type=int,
        default=autoscaling.DEFAULT_SCALE_UP_TIMEOUT,
        metavar="SECONDS",
        help="with --karpenter-groups: how long a pod may wait for its new node "
        f"(default {autoscaling.DEFAULT_SCALE_UP_TIMEOUT})",
    )
    parser.add_argument(
        "--team",
        metavar="NAME",
        help="task governance: run in the team's namespace hyperpod-ns-NAME through its Kueue LocalQueue "
        "(teams from the TaskGovernanceTeams stack output)",
    )
    parser.add_argument(
        "--priority",
        metavar="CLASS",
        help="with --team: the cluster policy's priority class (e.g. training; labelled training-priority); "
        "without it the task has task governance's lowest priority",
    )
    parser.add_argument(
        "--outputs", metavar="FILE", help="cdk deploy --outputs-file JSON for --team (else env vars of the same names)"
    )
    parser.add_argument("--validate-only", action="store_true", help="run the offline checks and stop")
    parser.add_argument(
        "--k8s-version",
        default=DEFAULT_K8S_VERSION,
        help=f"Kubernetes version whose schema pod_config is checked against "
        f"(default: {DEFAULT_K8S_VERSION}, the stack's EKS version)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.managed and args.down:
        raise StepError(
            ExitCode.USAGE, "--down has no effect with --managed: managed jobs tear their cluster down themselves"
        )
    groups = autoscaling.parse_groups(getattr(args, "karpenter_groups", None))
    if groups and not args.context:
        raise StepError(ExitCode.USAGE, "--karpenter-groups needs --context (SkyPilot's setting is per context)")
    if groups and args.scale_up_timeout < 60:
        raise StepError(ExitCode.USAGE, f"--scale-up-timeout must be at least 60 seconds, got {args.scale_up_timeout}")
    team = team_placement(args)
    validated = validate_tasks(args.tasks, args.k8s_version)
    if args.validate_only:
        emit_json(args, {"step": "submit", "ok": True, "validated": [str(v.path) for v in validated], "exit_code": 0})
        return ExitCode.OK
    results: list[TaskResult] = []
    with skypilot_environment(args.kubeconfig), local_api_server_lifecycle():
        register_volumes(validated, args.context)
        for item in validated:
            result = launch_task(item, args, team)
            results.append(result)
            if result.exit_code != 0:
                break
    code = next((r.exit_code for r in results if r.exit_code != 0), ExitCode.OK)
    emit_json(args, {"step": "submit", "ok": code == 0, "tasks": [asdict(r) for r in results], "exit_code": int(code)})
    return code


def validate_tasks(paths: list[str], k8s_version: str) -> list[ValidatedTask]:
    validated = []
    for path in paths:
        try:
            item = validate_task_file(path, k8s_version)
        except TaskInvalid as exc:
            raise StepError(ExitCode.TASK_INVALID, str(exc)) from None
        for warning in item.warnings:
            say(f"warning: {warning}")
        validated.append(item)
    say(f"submit: {len(validated)} task(s) passed offline validation")
    return validated


def register_volumes(validated: list[ValidatedTask], context: str | None) -> list[str]:
    """Register the SkyPilot volumes the tasks mount (``post_deploy/volumes.py``) before any launch."""
    import yaml

    from post_deploy import volumes

    paths = [item.path for item in validated]
    try:
        needed = volumes.needed_definitions(paths, [yaml.safe_load(p.read_text()) or {} for p in paths])
    except volumes.VolumeError as exc:
        raise StepError(ExitCode.TASK_INVALID, str(exc)) from None
    for definition in needed:
        say(f"submit: registering SkyPilot volume {definition.name!r} from {definition.path}")
        try:
            with sky_output_to_stderr():
                volumes.register(definition, context)
        except Exception as exc:  # noqa: BLE001 - e.g. the claim does not exist on the context
            raise StepError(
                ExitCode.LAUNCH_FAILED,
                f"could not register SkyPilot volume {definition.name!r} ({definition.path}): {first_line(exc)}; "
                "is the storage stack deployed? (`python -m post_deploy check` reports the claim)",
            ) from None
    return [d.name for d in needed]


def cluster_name_for(item: ValidatedTask, requested: str | None) -> str:
    if requested:
        return requested
    base = _INVALID_NAME_CHARS.sub("-", (item.task.name or item.path.stem).lower()).strip("-")
    return base if base[:1].isalpha() else f"task-{base}".rstrip("-")


def team_placement(args: argparse.Namespace) -> task_governance.TeamPlacement | None:
    """``--team``/``--priority`` checked against the deployed task governance, before anything runs."""
    team, priority = getattr(args, "team", None), getattr(args, "priority", None)
    if team is None:
        if priority is not None:
            raise StepError(ExitCode.USAGE, "--priority needs --team (priority classes are task governance's)")
        return None
    governance = task_governance.Governance.from_outputs(read_outputs(getattr(args, "outputs", None)))
    chosen = task_governance.placement_for(governance, team, priority)
    say(
        f"submit: team {team}: namespace {chosen.namespace}, Kueue queue {chosen.local_queue}, "
        f"priority {chosen.priority_class or 'none (lowest)'}"
    )
    return chosen


def launch_task(item: ValidatedTask, args: argparse.Namespace, team=None) -> TaskResult:
    task = item.task
    groups = autoscaling.parse_groups(getattr(args, "karpenter_groups", None))
    timeout = getattr(args, "scale_up_timeout", autoscaling.DEFAULT_SCALE_UP_TIMEOUT)
    if groups:
        offered = autoscaling.parse_groups(getattr(args, "cluster_accelerators", None))
        dropped = autoscaling.narrow_accelerators(task, offered)
        if dropped:
            say(f"submit: {item.path}: no instance group offers {', '.join(dropped)}; choosing among the others")
    with (
        _pinned_to_context(task, args.context),
        team_queue(team, args.context),
        autoscaling.autoscaler_config(args.context, groups, timeout),
    ):
        if args.managed:
            with _jobs_controller_home(args.context):
                return _launch_managed(item, task)
        return _launch_on_cluster(item, task, args)


def _launch_on_cluster(item: ValidatedTask, task, args: argparse.Namespace) -> TaskResult:
    import sky

    cluster = cluster_name_for(item, args.cluster_name)
    result = TaskResult(task=str(item.path), cluster=cluster, managed=False)
    say(f"submit: launching {item.path} on SkyPilot cluster {cluster!r}")
    with sky_output_to_stderr():
        _server_validate(task, item.path)
        try:
            request_id = sky.launch(task, cluster_name=cluster, down=args.down)
        except Exception as exc:  # noqa: BLE001 - any SDK failure here means nothing was launched
            return _failed(result, ExitCode.LAUNCH_FAILED, f"could not submit {item.path}: {first_line(exc)}")
        try:
            job_id, _handle = sky.stream_and_get(request_id, output_stream=sky_stream())[:2]
        except KeyboardInterrupt:
            _cancel(request_id)
            raise
        except Exception as exc:  # noqa: BLE001 - ResourcesUnavailableError, CommandError, ...
            return _failed(
                result,
                ExitCode.LAUNCH_FAILED,
                f"launch of {item.path} on {cluster!r} failed: {first_line(exc)} (details: sky api logs {request_id})",
            )
        result.job_id = job_id
        if job_id is None:
            if task.run:
                return _failed(
                    result, ExitCode.LAUNCH_FAILED, f"{cluster!r} is up but SkyPilot submitted no job for {item.path}"
                )
            say(f"submit: cluster {cluster!r} is up (task has no `run`; connect with: ssh {cluster})")
        else:
            try:
                result.exit_code = int(sky.tail_logs(cluster, job_id, follow=True, output_stream=sky_stream()))
            except Exception as exc:  # noqa: BLE001
                _failed(
                    result,
                    ExitCode.LAUNCH_FAILED,
                    f"could not follow job {job_id} on {cluster!r}: "
                    f"{first_line(exc)} (check: sky logs {cluster} {job_id})",
                )
            say(f"submit: job {job_id} on {cluster!r} finished with exit code {result.exit_code}")
        if args.down:
            _tear_down(result)
    return result


def _launch_managed(item: ValidatedTask, task) -> TaskResult:
    import sky

    result = TaskResult(task=str(item.path), cluster=None, managed=True)
    say(f"submit: launching {item.path} as a managed job")
    with sky_output_to_stderr():
        _server_validate(task, item.path)
        try:
            request_id = sky.jobs.launch(task, name=task.name)
        except Exception as exc:  # noqa: BLE001
            return _failed(
                result, ExitCode.LAUNCH_FAILED, f"could not submit managed job {item.path}: {first_line(exc)}"
            )
        try:
            job_ids, _handle = sky.stream_and_get(request_id, output_stream=sky_stream())[:2]
        except KeyboardInterrupt:
            _cancel(request_id)
            raise
        except Exception as exc:  # noqa: BLE001
            return _failed(
                result,
                ExitCode.LAUNCH_FAILED,
                f"managed job launch of {item.path} failed: {first_line(exc)} (details: sky api logs {request_id})",
            )
        job_id = job_ids[0] if isinstance(job_ids, list) and job_ids else job_ids
        if job_id is None or isinstance(job_id, list):  # None, or an empty list
            return _failed(result, ExitCode.LAUNCH_FAILED, f"SkyPilot returned no managed job id for {item.path}")
        result.job_id = int(job_id)
        try:
            code = sky.jobs.tail_logs(job_id=result.job_id, follow=True, output_stream=sky_stream())
        except Exception as exc:  # noqa: BLE001
            return _failed(
                result,
                ExitCode.LAUNCH_FAILED,
                f"could not follow managed job {job_id}: {first_line(exc)} (check: sky jobs logs {job_id})",
            )
        result.exit_code = int(code if code is not None else ExitCode.LAUNCH_FAILED)
    say(f"submit: managed job {job_id} finished with exit code {result.exit_code}")
    return result


def _server_validate(task, path: Path) -> None:
    """The API server's own validation (resources against the enabled infra): a rejection here is
    still a task problem, not a launch failure; not reaching the server is a launch failure."""
    import requests
    from sky import exceptions
    from sky.client import sdk

    try:
        sdk.validate(_as_dag(task))
    except (
        requests.RequestException,
        exceptions.ApiServerConnectionError,
        exceptions.APIVersionMismatchError,
        exceptions.ApiServerAuthenticationError,
    ) as exc:
        raise StepError(ExitCode.LAUNCH_FAILED, f"SkyPilot API server unavailable: {first_line(exc)}") from None
    except exceptions.CloudError as exc:  # the server hit an outside error (e.g. no catalog download)
        raise StepError(
            ExitCode.LAUNCH_FAILED, f"SkyPilot API server could not validate {path}: {first_line(exc)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the server re-raises the task's validation error
        raise StepError(
            ExitCode.TASK_INVALID, f"{path}: rejected by the SkyPilot API server: {first_line(exc)}"
        ) from None


def _as_dag(task):
    from sky.utils import dag_utils

    return dag_utils.convert_entrypoint_to_dag(task)


@contextlib.contextmanager
def _pinned_to_context(task, context: str | None) -> Iterator[None]:
    """Pin the task to one kubeconfig context and allow that context for the requests made inside
    (SkyPilot only uses the current-context unless ``kubernetes.allowed_contexts`` lists others;
    the client sends its config with every request, so an in-process override reaches the server)."""
    if not context:
        yield
        return
    from sky import skypilot_config

    task.set_resources_override({"region": context})
    config = skypilot_config.to_dict()
    allowed = config.get_nested(("kubernetes", "allowed_contexts"), None)
    if allowed != "all" and context not in (allowed or []):
        config.set_nested(("kubernetes", "allowed_contexts"), list(allowed or []) + [context])
    with skypilot_config.replace_skypilot_config_in_process(config):
        yield


@contextlib.contextmanager
def team_queue(team: task_governance.TeamPlacement | None, context: str | None) -> Iterator[None]:
    """Send the SkyPilot config that puts the task in the team's namespace and Kueue queue
    (``task_governance.team_config``) for ``context`` (default: the kubeconfig's current-context)."""
    if team is None:
        yield
        return
    from sky import skypilot_config
    from sky.provision.kubernetes import utils as kubernetes_utils
    from sky.utils import config_utils

    context = context or kubernetes_utils.get_current_kube_config_context_name()
    if not context:
        raise StepError(ExitCode.USAGE, "--team needs a kubeconfig context: pass --context or set current-context")
    merged = task_governance.team_config(dict(skypilot_config.to_dict()), context, team)
    with skypilot_config.replace_skypilot_config_in_process(config_utils.Config(merged)):
        yield


@contextlib.contextmanager
def _jobs_controller_home(context: str | None) -> Iterator[None]:
    """Send ``jobs.controller.resources`` that put the controller on an EKS system node
    (``placement.jobs_controller_resources``); the user's own keys there win."""
    from sky import skypilot_config

    config, replaced = placement.with_jobs_controller_home(skypilot_config.to_dict(), context)
    if replaced:
        say(
            f"warning: your SkyPilot config sets jobs.controller.resources {', '.join(replaced)}; "
            "the jobs controller may then not fit an EKS system node and take a GPU node instead"
        )
    with skypilot_config.replace_skypilot_config_in_process(config):
        yield


def _tear_down(result: TaskResult) -> None:
    import sky
    from sky import exceptions

    if result.cluster is None:
        return
    try:
        sky.stream_and_get(sky.down(result.cluster), output_stream=sky_stream())
        result.torn_down = True
    except exceptions.ClusterDoesNotExist:
        result.torn_down = True  # SkyPilot's autodown got there first
    except Exception as exc:  # noqa: BLE001 - a leaked GPU cluster must be loud
        message = f"teardown of {result.cluster!r} failed: {first_line(exc)} (run: sky down {result.cluster})"
        if result.exit_code == 0:
            _failed(result, ExitCode.LAUNCH_FAILED, message)
        else:
            say(f"error: {message}")
            result.error = f"{result.error}; {message}" if result.error else message
    if result.torn_down:
        say(f"submit: cluster {result.cluster!r} torn down")


def _cancel(request_id) -> None:
    import sky

    with contextlib.suppress(Exception):
        sky.api_cancel(request_id)


def _failed(result: TaskResult, code: ExitCode, message: str) -> TaskResult:
    say(f"error: {message}")
    result.exit_code = int(code)
    result.error = message
    return result
