"""Bundled hardware energy profiles (TOML data, every constant cited). See spikingmind.energy.profiles."""

from __future__ import annotations

from pathlib import Path


def profiles_dir() -> Path:
    """Folder holding the bundled `*.toml` hardware profiles."""
    return Path(__file__).resolve().parent
