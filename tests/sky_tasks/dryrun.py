"""``python -m tests.sky_tasks.dryrun --kubeconfig F --contexts C1,C2 [--controller {home,default}]
[--karpenter-groups G1,G2] TASK.yaml...``:
SkyPilot's own launch of each task on each context up to the moment it would create the pod, in
one process (SkyPilot's import and state set-up dominate; one process keeps the tests fast). ``--team``/``--priority``/``--outputs`` are ``submit``'s own flags.

Each task goes through what ``submit`` does with it (``validate_task_file``, which adds the
health selector; ``submit._pinned_to_context``; with ``--controller`` the managed-jobs
controller config of ``submit --managed``), then through ``sky.execution.launch(dryrun=True)``,
what a SkyPilot API server runs: the optimizer reads the double's nodes, checks the fit
(``check_instance_fits``), and the backend renders the cluster YAML with every pod_config merged
(``backend_utils.write_cluster_config``) and stops there. The rendered pod spec is what this
prints, one JSON line per task on stdout (SkyPilot's own output goes to stderr).

With ``--controller`` the pod rendered is the jobs controller's: its resources come from
SkyPilot's ``controller_utils.get_controller_resources`` for the task (``home``: under the config
``submit --managed`` sends; ``default``: SkyPilot's defaults), launched the way
``sky/jobs/server/core.py`` ``_ensure_controller_up`` launches it.

With ``--karpenter-groups`` the launch runs under the SkyPilot settings ``submit --karpenter-groups``
sends (``post_deploy.autoscaling``).

Printed per pod: namespace, labels, annotations, nodeSelector, affinity, tolerations and container resources (the
scheduling-relevant parts; the rest is SkyPilot's start-up script), and the provisioner's timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sky_tasks.dryrun")
    parser.add_argument("tasks", nargs="+")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--contexts", required=True, help="comma-separated kubeconfig contexts")
    parser.add_argument("--controller", help="comma-separated: home, default")
    parser.add_argument("--karpenter-groups", help="as submit --karpenter-groups: SkyPilot's autoscaler settings")
    parser.add_argument("--cluster-accelerators", help="as submit --cluster-accelerators")
    parser.add_argument("--team", help="submit --team: the task governance team")
    parser.add_argument("--priority", help="submit --priority")
    parser.add_argument("--outputs", help="submit --outputs: stack outputs naming the teams")
    args = parser.parse_args(argv)
    result = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import yaml
    from sky import execution, skypilot_config
    from sky.backends import backend_utils
    from sky.utils import controller_utils

    from post_deploy import autoscaling, skypilot_env, submit
    from post_deploy.task_validation import validate_task_file

    rendered: list[str] = []
    original = backend_utils.write_cluster_config

    def recording_write_cluster_config(*a, **kw):
        config = original(*a, **kw)
        rendered.append(config["ray"])
        return config

    backend_utils.write_cluster_config = recording_write_cluster_config
    exit_code = 0
    team = submit.team_placement(args)
    modes = args.controller.split(",") if args.controller else [None]
    runs = [(c, p, m) for c in args.contexts.split(",") for p in args.tasks for m in modes]
    for context, path, mode in runs:
        rendered.clear()
        out: dict = {"task": path, "context": context, "controller": mode}
        try:
            item = validate_task_file(path)
            cluster = submit.cluster_name_for(item, None)
            groups = autoscaling.parse_groups(args.karpenter_groups)
            scaled = autoscaling.autoscaler_config(context, groups, autoscaling.DEFAULT_SCALE_UP_TIMEOUT)
            if groups:
                autoscaling.narrow_accelerators(item.task, autoscaling.parse_groups(args.cluster_accelerators))
            with (
                skypilot_env.skypilot_environment(args.kubeconfig),
                submit._pinned_to_context(item.task, context),
                submit.team_queue(team, context),
                scaled,
            ):
                if mode:
                    home = submit._jobs_controller_home(context) if mode == "home" else nullcontext()
                    with home:
                        controller = controller_utils.Controllers.JOBS_CONTROLLER
                        resources = controller_utils.get_controller_resources(controller, item.task.resources)
                        task = item.task.__class__(name="controller-dryrun")
                        task.set_resources(resources)
                        cluster = controller.value.cluster_name
                        out["config_sent"] = skypilot_config.to_dict().get_nested(("jobs", "controller"), None)
                        execution.launch(task, cluster_name=cluster, dryrun=True, _disable_controller_check=True)
                else:
                    execution.launch(item.task, cluster_name=cluster, dryrun=True)
            out["cluster"] = cluster
            (cluster_yaml,) = rendered
            with open(cluster_yaml) as f:
                cluster_config = yaml.safe_load(f)
            node_config = cluster_config["available_node_types"]["ray_head_default"]["node_config"]
            # How long SkyPilot's provisioner lets the pod stay Pending before giving the launch up.
            out["provision_timeout"] = cluster_config["provider"].get("timeout")
            spec = node_config["spec"]
            out["pod"] = {
                "namespace": cluster_config["provider"].get("namespace"),
                "labels": (node_config.get("metadata") or {}).get("labels") or {},
                "annotations": (node_config.get("metadata") or {}).get("annotations") or {},
                "nodeSelector": spec.get("nodeSelector") or {},
                "affinity": spec.get("affinity") or {},
                "tolerations": spec.get("tolerations") or [],
                "resources": [c.get("resources") or {} for c in spec["containers"]],
            }
        except Exception as exc:  # noqa: BLE001 - reported as data for the test to judge
            out["error"] = f"{type(exc).__name__}: {exc}"
            exit_code = 1
        print(json.dumps(out, default=str), file=result, flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
