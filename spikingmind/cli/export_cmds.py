"""CLI commands (placeholder until implemented)."""


def register(app) -> None:
    """Add this module's commands to the app."""
