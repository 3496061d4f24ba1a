"""One SQL database, SQLite or PostgreSQL, behind the two calls the server's stores use.

Statements are written once: `?` placeholders and table names after a `{p}` prefix
(nothing in SQLite's files, `rs_` in the shared PostgreSQL schema of retrieval/postgres.py).
`run` executes one statement in a transaction of its own; `transaction()` gives an
`execute` for several that commit together or not at all. Safe to use from threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

Execute = Callable[..., Any]  # execute(sql, args=()) -> a cursor: fetchall(), rowcount


class Done:
    """A finished statement's rows and count (no cursor kept past its connection or lock)."""

    def __init__(self, rows: list[tuple], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def fetchall(self) -> list[tuple]:
        return self._rows


class Database(Protocol):
    where: str  # for messages: a file, or a URL without its password
    integrity_error: type[Exception]  # a row that references one that is gone

    def run(self, sql: str, args: tuple = ()) -> Done: ...

    def transaction(self) -> AbstractContextManager[Execute]: ...

    def close(self) -> None: ...


class SqliteDatabase:
    integrity_error: type[Exception] = sqlite3.IntegrityError

    def __init__(self, path: Path, schema: str = "") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.where = str(path)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        if schema:
            self._db.executescript(schema)
        self._lock = threading.Lock()

    @staticmethod
    def sql(statement: str) -> str:
        return statement.replace("{p}", "")

    def columns(self, table: str) -> list[str]:
        with self._lock:
            return [r[1] for r in self._db.execute(f"PRAGMA table_info({table})")]

    def run(self, sql: str, args: tuple = ()) -> Done:
        with self._lock, self._db:
            cursor = self._db.execute(self.sql(sql), args)
            return Done(cursor.fetchall(), cursor.rowcount)

    @contextmanager
    def transaction(self) -> Iterator[Execute]:
        def execute(sql: str, args: tuple = ()) -> Any:
            return self._db.execute(self.sql(sql), args)

        with self._lock, self._db:
            yield execute

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresDatabase:
    """The library's database (schema migrated when its pool opens), pooled per process."""

    def __init__(self, url: str, pool_size: int = 8) -> None:
        from ragserve.retrieval.location import redact
        from ragserve.retrieval.postgres import POOLS, foreign_key_violation

        self.url = url
        self.where = redact(url)
        self.integrity_error = foreign_key_violation()
        self._pool = POOLS.get(url, pool_size)
        self._closed = False

    @staticmethod
    def sql(statement: str) -> str:
        return statement.replace("{p}", "rs_").replace("?", "%s")

    def connection(self) -> AbstractContextManager[Any]:
        from ragserve.retrieval.postgres import pooled

        return pooled(self._pool, self.url)

    def run(self, sql: str, args: tuple = ()) -> Done:
        with self.connection() as conn:
            cursor = conn.execute(self.sql(sql), args)
            return Done(cursor.fetchall() if cursor.description else [], cursor.rowcount)

    @contextmanager
    def transaction(self) -> Iterator[Execute]:
        with self.connection() as conn, conn.transaction():

            def execute(sql: str, args: tuple = ()) -> Any:
                return conn.execute(self.sql(sql), args)

            yield execute

    def close(self) -> None:
        from ragserve.retrieval.postgres import POOLS

        if not self._closed:
            self._closed = True
            POOLS.put(self.url)
