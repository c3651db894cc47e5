"""SkyPilot volumes the submitted tasks mount, registered with the SkyPilot API server before launch.

A task names a volume (``volumes: {/fsx: fsx-claim}``); SkyPilot resolves the name from its own volume
table at launch and refuses a name it does not know (``VolumeNotFoundError``). So for every volume name
a task mounts, ``submit`` looks for a definition in ``volumes/`` beside the task file (the shipped one:
``sky_tasks/volumes/fsx.yaml``, the storage stack's FSx claim with ``use_existing``), pins its ``infra``
to the context the task launches on (a volume belongs to one Kubernetes context, and the EKS context is
named after the cluster, which a file cannot know), and applies it. Applying a registered volume again
changes nothing (SkyPilot: "Volume ... already exists"), so a rerun is safe. A name without a
definition is left to SkyPilot, so volumes registered by hand keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VOLUMES_DIR = "volumes"


class VolumeError(ValueError):
    """A volume definition cannot be used; the message names the file."""


@dataclass(frozen=True)
class VolumeDefinition:
    name: str
    path: Path
    config: dict[str, Any]

    def for_context(self, context: str | None) -> dict[str, Any]:
        """The definition with ``infra`` naming the context (``k8s/<context>``) when it says just ``k8s``."""
        config = dict(self.config)
        infra = str(config.get("infra") or "k8s")
        if context and infra in ("k8s", "kubernetes"):
            config["infra"] = f"k8s/{context}"
        return config


def mounted_volume_names(raw_task: dict[str, Any]) -> list[str]:
    """The external volume names a task's ``volumes:`` mounts (ephemeral ones have a size, no name)."""
    names = []
    for value in (raw_task.get("volumes") or {}).values():
        name = value if isinstance(value, str) else (value or {}).get("name") if isinstance(value, dict) else None
        if name and name not in names:
            names.append(name)
    return names


def definitions_beside(task_path: Path) -> dict[str, VolumeDefinition]:
    """Every volume definition in ``<task dir>/volumes/*.yaml``, by volume name."""
    found: dict[str, VolumeDefinition] = {}
    for path in sorted((task_path.parent / VOLUMES_DIR).glob("*.yaml")):
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise VolumeError(f"{path}: not valid YAML ({exc})") from None
        name = config.get("name") if isinstance(config, dict) else None
        if not name:
            raise VolumeError(f"{path}: a SkyPilot volume definition needs a name")
        if name in found:
            raise VolumeError(f"{path}: volume {name!r} is also defined in {found[name].path}")
        found[name] = VolumeDefinition(name, path, config)
    return found


def needed_definitions(task_paths: list[Path], raw_tasks: list[dict[str, Any]]) -> list[VolumeDefinition]:
    """The definitions to register for these tasks, each once, in the order the tasks mount them."""
    needed: dict[str, VolumeDefinition] = {}
    for path, raw in zip(task_paths, raw_tasks, strict=True):
        available = definitions_beside(path)
        for name in mounted_volume_names(raw):
            if name in available and name not in needed:
                needed[name] = available[name]
    return list(needed.values())


def register(definition: VolumeDefinition, context: str | None) -> None:
    """``sky volumes apply`` of one definition through the SDK (the API server checks the claim exists)."""
    import sky
    from sky.volumes import volume as volume_lib

    from post_deploy.skypilot_env import sky_stream

    volume = volume_lib.Volume.from_yaml_config(definition.for_context(context))
    sky.stream_and_get(sky.volumes.apply(volume), output_stream=sky_stream())
