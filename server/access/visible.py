"""What a principal may see of the library: its stores, and the files in them (and the
files it uploaded). One place, so listing, describing, downloading and retrieval agree."""

from __future__ import annotations

from ragserve.errors import NotFound

from ..catalog import Catalog, StoreRecord
from .keys import Principal

DEFAULT_STORE = "vs_default"


class Visibility:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def lookup(self, sid: str) -> tuple[str, str | None] | None:
        record = self.catalog.store(sid)
        return (record.name, record.owner) if record else None

    def stores(self, p: Principal) -> list[StoreRecord]:
        records = self.catalog.stores()
        if p.everything:
            return records
        return [r for r in records if p.can_read(r.id, r.name, r.owner)]

    def store_ids(self, p: Principal) -> set[str] | None:
        """The stores it may read (None: all)."""
        return None if p.everything else {r.id for r in self.stores(p)}

    def readable(self, p: Principal, sid: str) -> bool:
        found = self.lookup(sid)
        return p.everything or (found is not None and p.can_read(sid, *found))

    def files(self, p: Principal) -> set[str] | None:
        """Ids of the uploads it may see (None: all); the server's own corpus documents are
        visible with the default store."""
        if p.everything:
            return None
        stores = self.store_ids(p) or set()
        out = {fid for fid, sids in self.catalog.file_stores().items() if stores & set(sids)}
        out |= {fid for fid, owners in self.catalog.owners().items() if p.name in owners}
        return out

    def check_file(self, p: Principal, fid: str, corpus: bool = False) -> None:
        """404 (as for a file that does not exist) unless it may see the file."""
        if p.everything:
            return
        if corpus:
            if self.readable(p, DEFAULT_STORE):
                return
        elif fid in (self.files(p) or set()):
            return
        raise NotFound(f"No such File object: {fid}", param="file_id")

    def search_stores(self, p: Principal, named: list[str] | None) -> list[str] | None:
        """The stores a chat turn searches. Named stores must be readable (404 otherwise);
        with none named: the key's default store, else the server's own index if it may
        read it, else every store it may read. None: the server's own index, unscoped."""
        if named:
            for sid in named:
                if not self.readable(p, sid):
                    raise NotFound(
                        f"No vector store found with id '{sid}'", param="vector_store_ids"
                    )
            return named
        if p.name is None or (p.everything and p.grant.default_store is None):
            return None
        default = p.grant.default_store
        if default is not None:
            for r in self.catalog.stores():
                if default in (r.id, r.name) and p.can_read(r.id, r.name, r.owner):
                    return [r.id]
        if self.readable(p, DEFAULT_STORE):
            return None
        return sorted(self.store_ids(p) or ())
