"""From "stacks deployed" to "SkyPilot job running on HyperPod GPUs": ``python -m post_deploy --help``."""
