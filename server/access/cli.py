"""`ragserve keys add|list|revoke`: edit a keys file (see access.keys for its shape).

A new key is printed once, on stdout; the file keeps only its hash. Edits are atomic
(a temporary file renamed over the old one, mode 0600) and serialised by a lock file, so a
server watching the file never reads half of one, and each prints one audit event.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import getpass
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ragserve.options import SettingError

from .keys import SCOPES, Grant, KeyFileError, KeyTable, hash_key, load_keys, new_key

ENV = "RAGSERVE_API_KEY_FILE"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keys",
        help="add, list or revoke API keys in a keys file",
        description="Edit the keys file a server reads with --api-key-file (it reloads "
        "the file on its own). A new key is printed once; the file keeps its hash.",
    )
    p.add_argument(
        "--file",
        type=Path,
        default=os.environ.get(ENV),
        help=f"the keys file [env {ENV}]",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create a key and print it once")
    add.add_argument("name", help="who holds it (1-64 letters, digits, . _ @ -)")
    add.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        dest="scopes",
        help="what it may do (repeat); default: chat",
    )
    add.add_argument(
        "--store", action="append", default=[], help="a store it may read: id, name or * (repeat)"
    )
    add.add_argument(
        "--write-store",
        action="append",
        default=None,
        help="a store it may change (repeat); default: the same as --store",
    )
    add.add_argument("--default-store", help="the store searched when a request names none")
    add.add_argument("--expires", help="expiry date or datetime (ISO 8601, UTC if no zone)")
    add.add_argument("--rpm", type=int, help="requests per minute")
    add.add_argument("--tpm", type=int, help="tokens per minute")
    actions.add_parser("list", help="list the keys (names, scopes, stores; never keys)")
    revoke = actions.add_parser("revoke", help="remove a key; servers refuse it within a second")
    revoke.add_argument("name")
    p.set_defaults(func=run)


def _read(path: Path) -> KeyTable:
    if not path.exists():
        return KeyTable()
    try:
        return load_keys(path)
    except KeyFileError as exc:
        raise SettingError(str(exc)) from None


def _entry(digest: str, g: Grant) -> dict:
    out: dict = {"name": g.name, "hash": digest, "scopes": sorted(g.scopes)}
    if g.stores:
        out["stores"] = list(g.stores)
    if g.write_stores is not None:
        out["write_stores"] = list(g.write_stores)
    if g.default_store:
        out["default_store"] = g.default_store
    if g.expires is not None:
        out["expires"] = dt.datetime.fromtimestamp(g.expires, dt.UTC).isoformat()
    for field in ("rpm", "tpm"):
        if getattr(g, field) is not None:
            out[field] = getattr(g, field)
    return out


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def render(table: KeyTable) -> str:
    if table.kind == "json":
        doc: dict = {"keys": [_entry(h, g) for h, g in table.keys.items()]}
        if table.groups:
            doc["groups"] = {
                n: {k: v for k, v in _entry("", g).items() if k not in ("name", "hash")}
                for n, g in table.groups.items()
            }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    lines = ["# ragserve keys file: edit with `ragserve keys`; keys are kept as hashes", ""]
    for digest, g in table.keys.items():
        lines.append("[[keys]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in _entry(digest, g).items()]
        lines.append("")
    for name, g in table.groups.items():
        lines.append(f"[groups.{json.dumps(name)}]")
        entry = _entry("", g)
        lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items() if k not in ("name", "hash")]
        lines.append("")
    return "\n".join(lines)


def _write(path: Path, table: KeyTable) -> None:
    if table.kind == "lines":
        table.kind = "toml"  # the old form cannot hold scopes; its keys stay, as hashes
    text = render(table)
    load_keys_text_check(text, path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_keys_text_check(text: str, path: Path) -> None:
    from .keys import parse_keys

    parse_keys(text, str(path))  # never write a file the server would refuse


def _audit(action: str, name: str, path: Path) -> None:
    event = {
        "event": "audit",
        "action": f"keys.{action}",
        "key": name,
        "file": str(path),
        "actor": getpass.getuser(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
    }
    print(json.dumps(event), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    path: Path | None = args.file
    if path is None:
        raise SettingError(f"name the keys file with --file or {ENV}")
    path = path.expanduser()
    if args.action != "list":
        path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    lock = open(lock_path, "a") if args.action != "list" else None  # noqa: SIM115
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        table = _read(path)
        if args.action == "list":
            for digest, g in table.keys.items():
                expires = (
                    dt.datetime.fromtimestamp(g.expires, dt.UTC).date().isoformat()
                    if g.expires
                    else "never"
                )
                state = "expired" if g.expires and g.expires <= time.time() else "active"
                print(
                    f"{g.name}\t{','.join(sorted(g.scopes)) or '-'}\t"
                    f"stores={','.join(g.stores) or '-'}\texpires={expires}\t{state}\t"
                    f"{digest[:15]}…"
                )
            return 0
        if args.action == "revoke":
            found = [h for h, g in table.keys.items() if g.name == args.name]
            if not found:
                raise SettingError(f"no key named {args.name!r} in {path}")
            for h in found:
                del table.keys[h]
            _write(path, table)
            _audit("revoke", args.name, path)
            print(f"revoked {args.name}", file=sys.stderr)
            return 0
        if any(g.name == args.name for g in table.keys.values()):
            raise SettingError(f"a key named {args.name!r} exists; revoke it first")
        key = new_key()
        entry: dict = {"name": args.name, "scopes": args.scopes or ["chat"], "stores": args.store}
        if args.write_store is not None:
            entry["write_stores"] = args.write_store
        if args.default_store:
            entry["default_store"] = args.default_store
        if args.expires:
            entry["expires"] = args.expires
        for field in ("rpm", "tpm"):
            if getattr(args, field) is not None:
                entry[field] = getattr(args, field)
        from .keys import _grant

        try:
            grant = _grant(entry, "ragserve keys add")
        except KeyFileError as exc:
            raise SettingError(str(exc)) from None
        table.keys[hash_key(key)] = grant
        _write(path, table)
        _audit("add", args.name, path)
        print(key)
        print(
            f"added {args.name}: keep this key now, it is not stored and cannot be shown again",
            file=sys.stderr,
        )
        return 0
    finally:
        if lock is not None:
            lock.close()
