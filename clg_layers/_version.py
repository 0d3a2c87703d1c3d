"""The version of clg-layers: the one place it is written (pyproject.toml reads it through hatch)."""

__version__ = "0.3.0"
