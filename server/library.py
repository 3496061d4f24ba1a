"""The documents API's objects, opened on first use (the data directory may not exist, or
be wanted, for a server that only chats)."""

from __future__ import annotations

from functools import cached_property

from .catalog import Catalog
from .files.service import FileService
from .state import AppState
from .vector_stores.api import StoreApi
from .vector_stores.service import VectorStores


class Library:
    def __init__(self, state: AppState) -> None:
        self.state = state

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.state.settings.data)

    @cached_property
    def stores(self) -> VectorStores:
        return VectorStores(self.state, self.catalog)

    @cached_property
    def files(self) -> FileService:
        return FileService(self.state, self.catalog, self.stores)

    @cached_property
    def api(self) -> StoreApi:
        return StoreApi(self.stores)

    def store_names(self) -> list[tuple[str, str]]:
        """(id, name) of the stores besides the default one; none before any was made."""
        if (
            "catalog" not in self.__dict__
            and not (self.state.settings.data / "library.sqlite").exists()
        ):
            return []
        from .vector_stores.service import DEFAULT_STORE

        return [(r.id, r.name) for r in self.catalog.stores() if r.id != DEFAULT_STORE]

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.close()
