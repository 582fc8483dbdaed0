"""Hemicycle's settings: embedded defaults, an optional TOML file, environment variables."""

from .settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
