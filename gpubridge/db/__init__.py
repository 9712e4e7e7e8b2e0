"""Database access: async engine factory, tables and migrations."""

from gpubridge.db.engine import Database
from gpubridge.db.tables import metadata

__all__ = ["Database", "metadata"]
