"""The documents API's objects, opened on first use (the data directory may not exist, or
be wanted, for a server that only chats)."""

from __future__ import annotations

from functools import cached_property

from .access.keys import LOCAL, Principal
from .access.visible import Visibility
from .catalog import Catalog, open_catalog
from .files.service import FileService
from .state import AppState
from .vector_stores.api import StoreApi
from .vector_stores.service import VectorStores


class Library:
    def __init__(self, state: AppState) -> None:
        self.state = state

    @cached_property
    def catalog(self) -> Catalog:
        s = self.state.settings
        return open_catalog(s.retrieval.store, s.data)

    @cached_property
    def stores(self) -> VectorStores:
        return VectorStores(self.state, self.catalog)

    @cached_property
    def files(self) -> FileService:
        return FileService(self.state, self.catalog, self.stores, self.visible)

    @cached_property
    def api(self) -> StoreApi:
        return StoreApi(self.stores, self.visible)

    @cached_property
    def visible(self) -> Visibility:
        return Visibility(self.catalog)

    def _exists(self) -> bool:
        s = self.state.settings
        return (
            "catalog" in self.__dict__
            or s.retrieval.store is not None  # a database: shared, maybe filled elsewhere
            or (s.data / "library.sqlite").exists()
        )

    def resume(self) -> None:
        """Once the server is loaded: start the ingest runner of a library that exists, so
        attaches a stopped process left in progress are taken up again."""
        if self._exists():
            self.stores  # noqa: B018 - starts the runner, which sweeps

    def store_lookup(self, sid: str) -> tuple[str, str | None] | None:
        """A store's name and owner, for the access policy (None: no such store)."""
        return self.visible.lookup(sid) if self._exists() else None

    def store_names(self, principal: Principal = LOCAL) -> list[tuple[str, str]]:
        """(id, name) of the stores besides the default one that the caller may read;
        none before any was made."""
        if not self._exists():
            return []
        from .vector_stores.service import DEFAULT_STORE

        return [(r.id, r.name) for r in self.visible.stores(principal) if r.id != DEFAULT_STORE]

    def close(self) -> None:
        if "stores" in self.__dict__:
            self.stores.close()
        if "catalog" in self.__dict__:
            self.catalog.close()
