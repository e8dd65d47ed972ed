"""SQL storage for swiftnas's own records (SQLAlchemy 2 + Alembic migrations)."""

from .storage import DEFAULT_STORAGE, Storage, StorageError, head_revision, open_storage

__all__ = ["DEFAULT_STORAGE", "Storage", "StorageError", "head_revision", "open_storage"]
