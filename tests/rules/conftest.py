"""The rules run over the very templates ``cdk synth`` writes for the default config (one synth per
session, shared with tests/app through its file lock)."""

from tests.app.conftest import cdk_out, templates  # noqa: F401  (pytest fixtures)
