"""The deployed stacks' outputs, from ``cdk deploy --outputs-file`` and/or environment variables.

The direct path (``make deploy``) leaves ``cdk-outputs.json``, shaped
``{"<StackName>": {"<OutputKey>": "value"}}`` with each key in whichever stack exports it; the
pipeline's post-deploy CodeBuild step gets the same keys as environment variables through
``env_from_cfn_outputs``. Both name the keys from ``config.outputs`` so the writer and this reader
cannot drift. A key found in the file wins over the environment; a key exported by two stacks with
different values is refused (the file then mixes two deployments and any choice would be a guess).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config import outputs as keys

# Output key -> attribute name, in the order they are reported.
FIELDS: dict[str, str] = {
    keys.REGION: "region",
    keys.EKS_CLUSTER_NAME: "eks_cluster_name",
    keys.EKS_CLUSTER_ARN: "eks_cluster_arn",
    keys.HYPERPOD_CLUSTER_NAME: "hyperpod_cluster_name",
    keys.HYPERPOD_CLUSTER_ARN: "hyperpod_cluster_arn",
    keys.LIFECYCLE_BUCKET_NAME: "lifecycle_bucket_name",
    keys.HYPERPOD_KARPENTER_GROUPS: "hyperpod_karpenter_groups",
    keys.HYPERPOD_ACCELERATORS: "hyperpod_accelerators",
    keys.TASK_GOVERNANCE_TEAMS: "task_governance_teams",
    keys.TASK_GOVERNANCE_PRIORITY_CLASSES: "task_governance_priority_classes",
}


class OutputsError(ValueError):
    """The outputs cannot be used; the message is the one line the user sees."""


@dataclass(frozen=True)
class StackOutputs:
    region: str | None = None
    eks_cluster_name: str | None = None
    eks_cluster_arn: str | None = None
    hyperpod_cluster_name: str | None = None
    hyperpod_cluster_arn: str | None = None
    lifecycle_bucket_name: str | None = None
    hyperpod_karpenter_groups: str | None = None  # comma-separated; absent when autoscaling is off
    hyperpod_accelerators: str | None = None  # comma-separated accelerator labels; only with autoscaling
    # Only when task governance is deployed (see post_deploy.task_governance).
    task_governance_teams: str | None = None
    task_governance_priority_classes: str | None = None
    # output key -> where it came from ("cdk-outputs.json:StackName" or "environment")
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    # every stack the outputs file has an entry for (what `cdk deploy` deployed), in file order
    stack_names: tuple[str, ...] = field(default=(), compare=False)

    def require(self, *output_keys: str) -> None:
        """Raise one line naming every missing key and where they were looked for."""
        missing = [k for k in output_keys if not getattr(self, FIELDS[k])]
        if missing:
            raise OutputsError(
                f"missing stack output(s) {', '.join(missing)}: not in the outputs file and not set "
                "as environment variables of the same name"
            )

    @property
    def karpenter_groups(self) -> tuple[str, ...]:
        """Instance groups Karpenter scales from 0 (``hyperpod.autoscaling: karpenter``); () when off."""
        return tuple(g for g in (self.hyperpod_karpenter_groups or "").split(",") if g.strip())

    def as_dict(self) -> dict[str, str | None]:
        return {k: getattr(self, attr) for k, attr in FIELDS.items()}


def read_outputs(path: str | os.PathLike | None, environ: Mapping[str, str] | None = None) -> StackOutputs:
    """Collect the known output keys from the file (if given) and the environment."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    stacks: tuple[str, ...] = ()
    if path is not None:
        found, stacks = _read_file(Path(path))
        for key, (value, stack) in found.items():
            values[key] = value
            sources[key] = f"{Path(path).name}:{stack}"
    for key in FIELDS:
        if key not in values and environ.get(key, "").strip():
            values[key] = environ[key].strip()
            sources[key] = "environment"
    region_from_arn = _region_from_arn(values.get(keys.EKS_CLUSTER_ARN) or values.get(keys.HYPERPOD_CLUSTER_ARN))
    if keys.REGION not in values and region_from_arn:
        values[keys.REGION] = region_from_arn
        sources[keys.REGION] = "cluster ARN"
    return StackOutputs(**{FIELDS[k]: v for k, v in values.items()}, sources=sources, stack_names=stacks)


def _read_file(path: Path) -> tuple[dict[str, tuple[str, str]], tuple[str, ...]]:
    if not path.is_file():
        raise OutputsError(f"outputs file {str(path)!r} not found (write it with: cdk deploy --outputs-file {path})")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputsError(f"outputs file {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise OutputsError(
            f"outputs file {str(path)!r} must map stack names to objects of outputs, "
            'as `cdk deploy --outputs-file` writes: {"Stack": {"Key": "value"}}'
        )
    found: dict[str, tuple[str, str]] = {}
    for stack, stack_outputs in data.items():
        for key, value in stack_outputs.items():
            if key not in FIELDS:
                continue
            if not isinstance(value, str) or not value.strip():
                raise OutputsError(
                    f"outputs file {str(path)!r}: {stack}.{key} must be a non-empty string, got {value!r}"
                )
            value = value.strip()
            if key in found and found[key][0] != value:
                other_value, other_stack = found[key]
                raise OutputsError(
                    f"outputs file {str(path)!r}: {key} differs between stacks {other_stack} ({other_value!r}) "
                    f"and {stack} ({value!r}); keep one deployment per file"
                )
            found[key] = (value, stack)
    return found, tuple(data)


def _region_from_arn(arn: str | None) -> str | None:
    """``arn:aws:eks:us-west-2:123456789012:cluster/x`` -> ``us-west-2``."""
    parts = (arn or "").split(":")
    return parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else None
