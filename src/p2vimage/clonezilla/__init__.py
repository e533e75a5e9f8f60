"""Clonezilla image directories (``ocs-sr savedisk``) as input: metadata, partclone, restore."""

from .metadata import looks_like_clonezilla
from .restore import RestoreResult, restore

__all__ = ["looks_like_clonezilla", "restore", "RestoreResult"]
