"""Fixtures for the lifecycle-script tests: a fake node root to run on_create.sh against."""

from tests.lifecycle_scripts.fake_node import make_node  # noqa: F401  (pytest fixture)
