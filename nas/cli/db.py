"""``swiftnas db``: create, upgrade and inspect the SQL storage's schema."""

from __future__ import annotations

import typer

from ._common import console

db_app = typer.Typer(
    rich_markup_mode=None,  # help texts are plain: '.[coreml]' must print as it is
    help="The SQL storage: schema version and upgrades.", no_args_is_help=True)
STORAGE_HELP = "SQLAlchemy URL (default: sqlite:///swiftnas.db)."


@db_app.command("upgrade")
def upgrade(storage: str = typer.Option("sqlite:///swiftnas.db", "--storage",
                                        help=STORAGE_HELP)) -> None:
    """Create swiftnas's tables or upgrade them to this version's schema."""
    from nas.storage import head_revision
    from nas.storage.storage import Storage, create_engine

    store = Storage(create_engine(storage))
    before = store.current_revision()
    store.upgrade()
    console.print(f"{store.url}: schema {before or 'none'} -> {head_revision()}")


@db_app.command("current")
def current(storage: str = typer.Option("sqlite:///swiftnas.db", "--storage",
                                        help=STORAGE_HELP)) -> None:
    """Print the storage's schema version and the version this swiftnas needs."""
    from nas.storage import StorageError, head_revision
    from nas.storage.storage import Storage, create_engine, storage_exists

    if not storage_exists(storage):  # connecting would create an empty SQLite file
        raise StorageError(f"no such storage: {storage!r} names no existing database file; "
                           "check --storage, or create it with `swiftnas db upgrade`")
    store = Storage(create_engine(storage))
    console.print(f"{store.url}: schema {store.current_revision() or 'none'} "
                  f"(this swiftnas needs {head_revision()})")
