"""Who a request is, and what it may do: API keys with scopes, kept in a keys file by
their hash, reloaded when the file changes.

The keys file is TOML (or JSON with the same shape)::

    [[keys]]
    name = "contracts"                # who: the audit log and stored responses say this
    hash = "sha256:9f86d0…"           # sha256 of the key; the key itself is never kept
    scopes = ["chat", "stores:read"]  # chat, files:read, files:write, stores:read,
                                      # stores:write, admin
    stores = ["contracts"]            # vector stores it may read: ids, names or "*"
    write_stores = ["contracts"]      # ... and write (default: the same as stores)
    default_store = "contracts"       # searched when a request names no store
    expires = 2027-06-30              # optional: a TOML date or datetime
    rpm = 60                          # optional: requests per minute
    tpm = 200000                      # optional: tokens per minute

    [groups.engineering]              # trusted-header mode: a proxy's group -> grants
    scopes = ["chat"]
    stores = ["*"]

A file that is neither (one key a line, `--api-key-file`'s older form) holds full-access
keys. Keys are random 256-bit secrets, so one round of SHA-256 is a sound way to keep them
(what GitHub and Stripe do for tokens): there is no password to guess.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

SCOPES = ("chat", "files:read", "files:write", "stores:read", "stores:write", "admin")
KEY_PREFIX = "rs-"
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_FIELDS = {
    "name", "hash", "scopes", "stores", "write_stores", "default_store", "expires", "rpm", "tpm",
}  # fmt: skip


class KeyFileError(ValueError):
    """A keys file that cannot be used; the message names the file and the line."""


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Grant:
    """What one key (or one group) may do."""

    name: str
    scopes: frozenset[str]
    stores: tuple[str, ...] = ()
    write_stores: tuple[str, ...] | None = None
    default_store: str | None = None
    expires: float | None = None
    rpm: int | None = None
    tpm: int | None = None

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes


FULL_SCOPES = frozenset(SCOPES)


def full_grant(name: str) -> Grant:
    return Grant(name, FULL_SCOPES, ("*",))


@dataclass(frozen=True)
class Principal:
    """The caller of one request. `name` None: keys are off (the local default), where
    everything is allowed, as before keys existed."""

    name: str | None
    grant: Grant
    link_file: str | None = None  # a signed citation link: this one file's content only

    def has(self, scope: str) -> bool:
        return self.grant.admin or scope in self.grant.scopes

    @staticmethod
    def _matches(patterns: tuple[str, ...], sid: str, name: str) -> bool:
        return "*" in patterns or sid in patterns or name in patterns

    def can_read(self, sid: str, name: str, owner: str | None) -> bool:
        g = self.grant
        return (
            g.admin
            or self._matches(g.stores, sid, name)
            or (owner is not None and owner == self.name)
            or self.can_write(sid, name, owner)
        )

    def can_write(self, sid: str, name: str, owner: str | None) -> bool:
        g = self.grant
        patterns = g.stores if g.write_stores is None else g.write_stores
        return (
            g.admin
            or self._matches(patterns, sid, name)
            or (owner is not None and owner == self.name)
        )

    @property
    def everything(self) -> bool:
        """Reads every store (no filtering needed)."""
        return self.grant.admin or "*" in self.grant.stores


LOCAL = Principal(None, full_grant("local"))


@dataclass
class KeyTable:
    keys: dict[str, Grant] = field(default_factory=dict)  # by hash
    groups: dict[str, Grant] = field(default_factory=dict)
    kind: str = "toml"  # toml | json | lines

    def names(self) -> list[str]:
        return [g.name for g in self.keys.values()]


def _line_of(text: str, pattern: str, nth: int) -> int:
    found = [m.start() for m in re.finditer(pattern, text, re.M)]
    if nth < len(found):
        return text.count("\n", 0, found[nth]) + 1
    return 1


def _expiry(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise KeyFileError(
                f"{where}: expires must be a date (2027-06-30) or a datetime"
            ) from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()
    raise KeyFileError(f"{where}: expires must be a date (2027-06-30) or a datetime")


def _strings(entry: dict, key: str, where: str) -> tuple[str, ...] | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise KeyFileError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _limit(entry: dict, key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KeyFileError(f"{where}: {key} must be a whole number of at least 1")
    return value


def _grant(entry: Any, where: str, name: str | None = None) -> Grant:
    if not isinstance(entry, dict):
        raise KeyFileError(f"{where}: expected a table of fields")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise KeyFileError(
            f"{where}: unknown field {sorted(unknown)[0]!r}; known: {', '.join(sorted(_FIELDS))}"
        )
    name = name if name is not None else entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise KeyFileError(f"{where}: name must be 1-64 letters, digits or . _ @ -")
    scopes = _strings(entry, "scopes", where) or ()
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise KeyFileError(f"{where}: unknown scope {bad[0]!r}; scopes: {', '.join(SCOPES)}")
    default = entry.get("default_store")
    if default is not None and not isinstance(default, str):
        raise KeyFileError(f"{where}: default_store must be a store id or name")
    return Grant(
        name=name,
        scopes=frozenset(scopes),
        stores=_strings(entry, "stores", where) or (),
        write_stores=_strings(entry, "write_stores", where),
        default_store=default,
        expires=_expiry(entry.get("expires"), where),
        rpm=_limit(entry, "rpm", where),
        tpm=_limit(entry, "tpm", where),
    )


def kind_of(text: str) -> str:
    stripped = "\n".join(
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ).lstrip()
    if stripped.startswith("{"):
        return "json"
    if re.search(r"^\s*\[", text, re.M) or not stripped:
        return "toml"
    return "lines"


def parse_keys(text: str, source: str = "keys file") -> KeyTable:
    kind = kind_of(text)
    if kind == "lines":
        keys = [line.strip() for line in text.splitlines()]
        keys = [k for k in keys if k and not k.startswith("#")]
        return KeyTable(
            {hash_key(k): full_grant(f"key-{i}") for i, k in enumerate(keys, 1)}, kind="lines"
        )
    if kind == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyFileError(f"{source}:{exc.lineno}: {exc.msg}") from None
        header, group_header = r'"name"\s*:', r"^"
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"line (\d+)", str(exc))
            line = found[1] if found else "1"
            raise KeyFileError(f"{source}:{line}: {exc}") from None
        header, group_header = r"^[ \t]*\[\[[ \t]*keys[ \t]*\]\]", None
    if not isinstance(doc, dict) or set(doc) - {"keys", "groups"}:
        raise KeyFileError(f"{source}:1: expected only 'keys' and 'groups' at the top level")
    entries = doc.get("keys", [])
    if not isinstance(entries, list):
        raise KeyFileError(f"{source}:1: 'keys' must be a list of tables")
    table = KeyTable(kind=kind)
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{source}:{_line_of(text, header, i)}: key {i + 1}"
        grant = _grant(entry, where)
        digest = entry.get("hash")
        if not isinstance(digest, str) or not _HASH.match(digest):
            raise KeyFileError(f"{where}: hash must be 'sha256:' and 64 hex digits")
        if grant.name in seen or digest in table.keys:
            raise KeyFileError(f"{where}: a second key named {grant.name!r} or with its hash")
        seen.add(grant.name)
        table.keys[digest] = grant
    groups = doc.get("groups", {})
    if not isinstance(groups, dict):
        raise KeyFileError(f"{source}:1: 'groups' must be a table of groups")
    for name, entry in groups.items():
        pattern = (
            rf"^\s*\[\s*groups\.\"?{re.escape(name)}\"?\s*\]"
            if group_header is None
            else (rf'"{re.escape(name)}"\s*:')
        )
        where = f"{source}:{_line_of(text, pattern, 0)}: group {name!r}"
        if isinstance(entry, dict) and "hash" in entry:
            raise KeyFileError(f"{where}: a group has no hash (its members come from the proxy)")
        table.groups[name] = _grant(
            {k: v for k, v in entry.items() if k != "name"} if isinstance(entry, dict) else entry,
            where,
            name,
        )
    return table


def load_keys(path: Path) -> KeyTable:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not UTF-8 text") from None
    return parse_keys(text, str(path))


class KeyRing:
    """The keys a server accepts: `--api-key` values (full access) and the keys file,
    reloaded by a watcher thread when the file changes. A malformed change is logged and
    the keys before it stay in force (the CLI never writes one)."""

    POLL_S = 0.2

    def __init__(self, keys: tuple[str, ...] = (), path: Path | None = None) -> None:
        self._fixed = {hash_key(k): full_grant(f"key-{i}") for i, k in enumerate(keys, 1)}
        self.path = path
        self._table = KeyTable()
        self._stamp: tuple | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if path is not None:
            self._table = load_keys(path)  # KeyFileError: the server does not start
            self._stamp = self._stat()

    @property
    def enabled(self) -> bool:
        return bool(self._fixed) or self.path is not None

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def lookup(self, key: str, now: float | None = None) -> Grant | None:
        if not key:
            return None
        digest = hash_key(key)
        grant = self._fixed.get(digest) or self._table.keys.get(digest)
        if grant is None:
            return None
        if grant.expires is not None and (now or time.time()) >= grant.expires:
            return None
        return grant

    def groups(self, names: list[str], user: str) -> Grant | None:
        """The union of the grants of a proxy user's groups (None: no known group)."""
        found = [self._table.groups[g] for g in names if g in self._table.groups]
        if not found:
            return None
        scopes = frozenset().union(*(g.scopes for g in found))
        stores = tuple(dict.fromkeys(s for g in found for s in g.stores))
        writes = tuple(
            dict.fromkeys(
                s for g in found for s in (g.stores if g.write_stores is None else g.write_stores)
            )
        )
        default = next((g.default_store for g in found if g.default_store), None)
        rpm = max((g.rpm for g in found if g.rpm), default=None)
        tpm = max((g.tpm for g in found if g.tpm), default=None)
        if any(g.rpm is None for g in found):
            rpm = None
        if any(g.tpm is None for g in found):
            tpm = None
        return Grant(user, scopes, stores, writes, default, None, rpm, tpm)

    def reload(self) -> bool:
        """Reload if the file changed; True when new keys took effect."""
        if self.path is None:
            return False
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            table = load_keys(self.path)
        except KeyFileError as exc:
            log.error("keys.reload_failed", error=str(exc), kept=len(self._table.keys))
            return False
        self._table = table
        log.info("keys.reloaded", keys=len(table.keys), groups=len(table.groups))
        return True

    def start(self) -> None:
        if self.path is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="keys-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.POLL_S):
            try:
                self.reload()
            except Exception:  # never let the watcher die: keep the keys in force
                log.exception("keys.watch_failed")

    def close(self) -> None:
        self._stop.set()
