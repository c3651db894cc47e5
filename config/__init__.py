"""Typed, validated configuration for the app (see ``config.model``)."""

from config.loader import ConfigError, load_config
from config.model import AppConfig

__all__ = ["AppConfig", "ConfigError", "load_config"]
