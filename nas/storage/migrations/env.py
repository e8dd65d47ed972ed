"""Alembic environment: runs on the connection swiftnas hands over (see storage.py)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
    version_table="swiftnas_alembic_version",  # Optuna has its own alembic_version table
)
with context.begin_transaction():
    context.run_migrations()
