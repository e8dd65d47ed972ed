"""The swiftnas SQL storage: one URL, any SQLAlchemy database (SQLite default, PostgreSQL).

Every public method is one session that commits on success and rolls back on any error, so a
crash never leaves a half-written import. The schema is owned by Alembic (``migrations/``);
opening a storage whose schema is older than this swiftnas fails with the upgrade command.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session, sessionmaker

from search_spaces import ArchConfig, SwiftNASError
from search_spaces.text import command_hint

from .models import MeasurementRow

if TYPE_CHECKING:
    from latency_models import Measurement

DEFAULT_STORAGE = "sqlite:///swiftnas.db"
SQLITE_BUSY_TIMEOUT_S = 60
# A server that accepts and never answers would otherwise hold every command for psycopg's
# default (about 130 s); `?connect_timeout=N` in the URL overrides it.
CONNECT_TIMEOUT_S = 10
VERSION_TABLE = "swiftnas_alembic_version"
_MIGRATIONS = Path(__file__).with_name("migrations")


def one_line(message: object) -> str:
    """Driver messages span lines (psycopg adds hints); errors here are one line."""
    return " ".join(str(message).split())


def connect_problem(exc: object) -> str:
    """A driver's connection error in one line; a timeout also says how to wait longer."""
    text = one_line(exc)
    if "timeout" in text.lower():
        text += (f" (swiftnas waits {CONNECT_TIMEOUT_S} s; for a slow server add "
                 "?connect_timeout=SECONDS to the URL)")
    return text


class StorageError(SwiftNASError, RuntimeError):
    """The storage URL is malformed or unreachable, or its schema needs an upgrade."""


def _alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None  # the package ships at least one migration
    return head


def engine_kwargs(url: str) -> dict[str, Any]:
    """Connection arguments every engine on ``url`` gets (swiftnas's and Optuna's): SQLite
    waits up to 60 s for another process's write lock (Python's default is 5); a server gets
    ``CONNECT_TIMEOUT_S`` unless the URL sets ``connect_timeout`` itself."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if url.startswith("postgresql") and "connect_timeout=" not in url:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


def create_engine(url: str) -> sa.Engine:
    try:
        engine = sa.create_engine(url, future=True, **engine_kwargs(url))
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
        # ValueError: a part that does not parse, e.g. a non-numeric port
        raise StorageError(
            f"malformed storage URL {url!r} ({one_line(exc)}); use an SQLAlchemy URL such as "
            "sqlite:///swiftnas.db or postgresql+psycopg://user:pass@host/db"
        ) from exc
    except ImportError as exc:
        raise StorageError(
            f"storage URL {url!r} needs a database driver that is not installed ({exc}); "
            "for PostgreSQL install swiftnas with `pip install -e '.[postgres]'`"
        ) from exc
    if engine.dialect.name == "sqlite":
        db = sqlite_path(engine)
        if db and not Path(db).parent.exists():
            raise StorageError(
                f"storage URL {url!r}: folder {str(Path(db).parent)!r} does not exist; "
                "create it or use another path"
            )
        _transactional_sqlite(engine)
    return engine


def sqlite_path(engine: sa.Engine) -> str | None:
    """The file of a SQLite engine (also for ``sqlite:///file:PATH?mode=ro&uri=true``), or None
    for other databases and in-memory SQLite."""
    if engine.dialect.name != "sqlite":
        return None
    db = engine.url.database or ""
    if db.startswith("file:"):
        db = db.removeprefix("file:").split("?")[0]
    return db if db and db != ":memory:" else None


def _transactional_sqlite(engine: sa.Engine) -> None:
    """Make SQLite transactions real (SQLAlchemy's documented recipe): Python's sqlite3 driver
    emits no BEGIN of its own, so a SAVEPOINT opened the transaction and its RELEASE committed
    it, and a failing evaluation could leave a candidate row without its latency row. With the
    driver's own handling off and an explicit BEGIN, a session is one transaction whose
    savepoints nest inside it."""

    @sa.event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # A deferred transaction that has read and then writes cannot wait for another
        # writer (SQLite answers "database is locked" at once, to avoid a deadlock: two
        # drivers on one file hit it). Writing sessions take the write lock up front and wait.
        write = conn.get_execution_options().get("swiftnas_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def read_engine(engine: sa.Engine) -> sa.Engine:
    """``engine`` for reads that need no transaction: on PostgreSQL each statement reads its own
    snapshot anyway, and without a transaction psycopg sends no BEGIN and the pool no closing
    ROLLBACK (which also dropped the connection's prepared statements): 2-3 round trips less
    per read. Other databases: ``engine`` itself."""
    return (engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql" else engine)


class Storage:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.read_engine = read_engine(engine)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------ schema
    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(
                    conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
        except sa.exc.DBAPIError as exc:  # unreachable server, not a database file, ...
            raise StorageError(f"cannot open storage {self.url}: {connect_problem(exc.orig)}; "
                               "check the URL, that the server runs and that you may connect"
                               ) from exc

    def upgrade(self) -> None:
        """Create or upgrade swiftnas's tables to this version's schema, and create Optuna's
        tables, so that drivers started together never race to create them."""
        import optuna
        from alembic import command

        with self.engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "head")
        optuna.storages.RDBStorage(self.engine.url.render_as_string(hide_password=False))

    def check_schema(self) -> None:
        current, head = self.current_revision(), head_revision()
        if current != head:
            raise StorageError(
                f"storage {self.url} has swiftnas schema {current or 'none'}, this swiftnas "
                f"needs {head}; run `{command_hint('db', 'upgrade', storage=self.url)}`"
            )

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction; ``write`` sessions take SQLite's write lock when they begin."""
        with self._sessions() as session:
            if write:
                session.connection(execution_options={"swiftnas_write": True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    # ------------------------------------------------------------------ measurements
    def add_measurements(self, rows: Sequence[Measurement], *, origin: str = "") -> int:
        """Store measurements in one transaction (all or nothing)."""
        records = [
            MeasurementRow(
                model=m.model, device=m.device, latency_ms=m.latency_ms, timm_name=m.timm_name,
                arch_json=m.arch.to_json(indent=None) if m.arch else "",
                input_resolution=m.input_resolution, source=m.source,
                compute_unit=m.compute_unit, os=m.os, family=m.family, notes=m.notes,
                fallback=m.fallback, origin=m.origin or origin,
            )
            for m in rows
        ]
        with self.session(write=True) as session:
            session.add_all(records)
        return len(records)

    def measurements(self) -> list[Measurement]:
        from latency_models import Measurement

        with self.session() as session:
            records = session.scalars(sa.select(MeasurementRow).order_by(MeasurementRow.id)).all()
        return [
            Measurement(
                model=r.model, device=r.device, latency_ms=r.latency_ms, timm_name=r.timm_name,
                arch=ArchConfig.from_json(r.arch_json) if r.arch_json else None,
                input_resolution=r.input_resolution, source=r.source,
                compute_unit=r.compute_unit, os=r.os, family=r.family, notes=r.notes,
                fallback=r.fallback, origin=r.origin or f"storage:{r.id}",
            )
            for r in records
        ]


def _missing_file(engine: sa.Engine) -> str | None:
    """The file of a SQLite engine when it is not there yet (connecting would create it)."""
    db = sqlite_path(engine)
    return db if db and not Path(db).is_file() else None


def storage_exists(url: str) -> bool:
    """False for a SQLite file (or its folder) that is not there yet; True for servers, which
    commands open without creating anything but swiftnas's tables."""
    return _missing_file(create_engine(url)) is None


def existing_storage(url: str) -> Storage | None:
    """``url``'s storage when it already holds swiftnas's tables, else None (a SQLite file not
    there yet, a server database without them): a command reads what is stored while it
    validates its input, and creates the tables only once the input passed. An unreachable
    server or an older schema raises, as ``open_storage`` does."""
    engine = create_engine(url)
    if _missing_file(engine) is not None:
        return None
    store = Storage(engine)
    if store.current_revision() is None:
        return None
    store.check_schema()
    return store


def open_storage(url: str = DEFAULT_STORAGE, *, create: bool = True) -> Storage:
    """Open ``url``. A database without swiftnas tables gets them when ``create``; one with an
    older schema raises ``StorageError`` naming `swiftnas db upgrade`."""
    engine = create_engine(url)
    db = _missing_file(engine)
    if not create and db:
        # readers (pareto, studies, dashboard) must not leave an empty database behind
        raise StorageError(f"no such storage: {db!r} does not exist; check --storage, or create "
                           "it with `swiftnas search` or `swiftnas db upgrade`")
    storage = Storage(engine)
    if storage.current_revision() is None and create:
        try:
            storage.upgrade()
        except sa.exc.DBAPIError:
            # Another process created the schema at the same moment: fine if it finished.
            time.sleep(1.0)
    storage.check_schema()
    return storage
