"""``python -m tests.rehearsal.sky_launch_dryrun TASK.yaml --kubeconfig F --context C``: the API
server's half of ``submit``, up to the point where SkyPilot would create the pod.

``submit`` validates the task (``task_validation``), pins it to the kubeconfig context and allows
that context (``submit._pinned_to_context``), then sends ``sky.launch`` to a SkyPilot API server,
which runs ``sky.execution.launch``. Starting a real API server takes longer than the whole
rehearsal, so this runs the same validated, pinned task through ``sky.execution.launch(dryrun=True)``
in this process (what the server runs for ``sky launch --dryrun``): SkyPilot's optimizer reads the
nodes' GPU labels and allocatable GPUs through the kubeconfig the ``kubeconfig`` step wrote,
chooses resources, and the Kubernetes backend stops before creating anything.

Prints one JSON line on stdout (SkyPilot's own output goes to stderr): the SkyPilot cluster name
and the chosen resources, or the error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.rehearsal.sky_launch_dryrun")
    parser.add_argument("task")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--context", required=True)
    args = parser.parse_args(argv)
    # SkyPilot binds its log handlers to stdout when imported: keep fd 1 for the result line only.
    result = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from sky import backends, execution

    from post_deploy import skypilot_env, submit
    from post_deploy.task_validation import validate_task_file

    class RecordingBackend(backends.CloudVmRayBackend):
        """The backend the server uses, noting what it is asked to provision (launch copies the task)."""

        provisioned: list = []

        def provision(self, task, to_provision, **kwargs):
            self.provisioned.append(to_provision)
            return super().provision(task, to_provision, **kwargs)

    item = validate_task_file(args.task)
    cluster = submit.cluster_name_for(item, None)
    try:
        with skypilot_env.skypilot_environment(args.kubeconfig), submit._pinned_to_context(item.task, args.context):
            execution.launch(item.task, cluster_name=cluster, dryrun=True, backend=RecordingBackend())
    except Exception as exc:  # noqa: BLE001 - reported as data for the rehearsal to judge
        print(json.dumps({"cluster": cluster, "error": f"{type(exc).__name__}: {exc}"}), file=result, flush=True)
        return 1
    (best,) = RecordingBackend.provisioned
    print(
        json.dumps(
            {
                "cluster": cluster,
                "cloud": str(best.cloud),
                "context": best.region,
                "accelerators": best.accelerators,
                "image_id": best.image_id,
                "dryrun_finished": True,
            }
        ),
        file=result,
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
