"""/v1/vector_stores: stores, their files, file batches and search (thin: see service)."""

from __future__ import annotations

import asyncio
from typing import Literal

from litestar import Request, delete, get, post

from ..access.policy import needs, principal_of
from ..body import decode_body
from ..operations import GET, PAGE_400, POST, route
from ..pages import Cursor, Limit, Order, Page
from .api import StoreApi
from .protocol import (
    CreateBatch,
    CreateStoreFile,
    CreateVectorStore,
    FileBatch,
    SearchRequest,
    SearchResults,
    UpdateStoreFile,
    UpdateVectorStore,
    VectorStore,
    VectorStoreDeleted,
    VectorStoreFile,
    VectorStoreFileDeleted,
    VectorStoreFileList,
    VectorStoreList,
)

TAGS = ["vector_stores"]
STORE = "/v1/vector_stores/{vector_store_id:str}"
FILE = STORE + "/files/{file_id:str}"
IN_STORE = {**GET, 404: "no such vector store (or file or batch in it); files named in a body: 400"}
IN_STORE_BODY = {**POST, 404: IN_STORE[404]}
DEFAULT_409 = "the default store is the server's own index: it cannot be deleted"


@post(
    "/v1/vector_stores",
    status_code=200,
    opt=route(needs("stores:write", audit=True), POST, body="CreateVectorStore"),
    operation_id="createVectorStore",
    tags=TAGS,
    summary="Create a vector store (an index of its own), optionally with files",
)
async def create_store(request: Request, stores: StoreApi) -> VectorStore:
    body = await decode_body(request, CreateVectorStore)
    return await asyncio.to_thread(stores.create, body, principal_of(request))


@get(
    "/v1/vector_stores",
    opt=route(needs("stores:read"), {**GET, 400: PAGE_400}),
    operation_id="listVectorStores",
    tags=TAGS,
    summary="List vector stores",
)
async def list_stores(
    request: Request,
    stores: StoreApi,
    limit: Limit = 20,
    after: Cursor = None,
    before: Cursor = None,
    order: Order = "desc",
) -> VectorStoreList:
    page = Page(limit, after, before, order)
    return await asyncio.to_thread(stores.list, principal_of(request), page)


@get(
    STORE,
    opt=route(needs("stores:read", store="read"), IN_STORE),
    operation_id="getVectorStore",
    tags=TAGS,
    summary="Describe a vector store",
)
async def get_store(vector_store_id: str, stores: StoreApi) -> VectorStore:
    return await asyncio.to_thread(stores.get, vector_store_id)


@post(
    STORE,
    status_code=200,
    opt=route(
        needs("stores:write", store="write", audit=True), IN_STORE_BODY, body="UpdateVectorStore"
    ),
    operation_id="modifyVectorStore",
    tags=TAGS,
    summary="Rename a vector store or change its metadata",
)
async def update_store(vector_store_id: str, request: Request, stores: StoreApi) -> VectorStore:
    body = await decode_body(request, UpdateVectorStore)
    return await asyncio.to_thread(stores.update, vector_store_id, body)


@delete(
    STORE,
    status_code=200,
    opt=route(needs("stores:write", store="write", audit=True), {**IN_STORE, 409: DEFAULT_409}),
    operation_id="deleteVectorStore",
    tags=TAGS,
    summary="Delete a vector store and its index",
)
async def delete_store(vector_store_id: str, stores: StoreApi) -> VectorStoreDeleted:
    return await asyncio.to_thread(stores.delete, vector_store_id)


@post(
    STORE + "/files",
    status_code=200,
    opt=route(
        needs("stores:write", store="write", audit=True), IN_STORE_BODY, body="CreateStoreFile"
    ),
    operation_id="createVectorStoreFile",
    tags=TAGS,
    summary="Attach an uploaded file; it is ingested in the background",
)
async def attach_file(vector_store_id: str, request: Request, stores: StoreApi) -> VectorStoreFile:
    body = await decode_body(request, CreateStoreFile)
    return await asyncio.to_thread(stores.attach, vector_store_id, body, principal_of(request))


@get(
    STORE + "/files",
    opt=route(needs("stores:read", store="read"), {**IN_STORE, 400: PAGE_400}),
    operation_id="listVectorStoreFiles",
    tags=TAGS,
    summary="List a vector store's files and their ingest status",
)
async def list_files(
    vector_store_id: str,
    stores: StoreApi,
    limit: Limit = 20,
    after: Cursor = None,
    before: Cursor = None,
    order: Order = "desc",
    filter: Literal["in_progress", "completed", "failed", "cancelled"] | None = None,
) -> VectorStoreFileList:
    page = Page(limit, after, before, order)
    return await asyncio.to_thread(stores.files, vector_store_id, page, filter)


@get(
    FILE,
    opt=route(needs("stores:read", store="read"), IN_STORE),
    operation_id="getVectorStoreFile",
    tags=TAGS,
    summary="A file's ingest status",
)
async def get_file(vector_store_id: str, file_id: str, stores: StoreApi) -> VectorStoreFile:
    return await asyncio.to_thread(stores.file, vector_store_id, file_id)


@post(
    FILE,
    status_code=200,
    opt=route(
        needs("stores:write", store="write", audit=True), IN_STORE_BODY, body="UpdateStoreFile"
    ),
    operation_id="updateVectorStoreFileAttributes",
    tags=TAGS,
    summary="Change a file's attributes",
)
async def update_file(
    vector_store_id: str, file_id: str, request: Request, stores: StoreApi
) -> VectorStoreFile:
    body = await decode_body(request, UpdateStoreFile)
    return await asyncio.to_thread(stores.set_attributes, vector_store_id, file_id, body)


@delete(
    FILE,
    status_code=200,
    opt=route(needs("stores:write", store="write", audit=True), IN_STORE),
    operation_id="deleteVectorStoreFile",
    tags=TAGS,
    summary="Remove a file from the store (its chunks go, the store republishes)",
)
async def detach_file(
    vector_store_id: str, file_id: str, stores: StoreApi
) -> VectorStoreFileDeleted:
    return await asyncio.to_thread(stores.detach, vector_store_id, file_id)


@post(
    STORE + "/file_batches",
    status_code=200,
    opt=route(needs("stores:write", store="write", audit=True), IN_STORE_BODY, body="CreateBatch"),
    operation_id="createVectorStoreFileBatch",
    tags=TAGS,
    summary="Attach several files at once",
)
async def create_batch(vector_store_id: str, request: Request, stores: StoreApi) -> FileBatch:
    body = await decode_body(request, CreateBatch)
    return await asyncio.to_thread(
        stores.create_batch, vector_store_id, body, principal_of(request)
    )


@get(
    STORE + "/file_batches/{batch_id:str}",
    opt=route(needs("stores:read", store="read"), IN_STORE),
    operation_id="getVectorStoreFileBatch",
    tags=TAGS,
    summary="A batch's progress",
)
async def get_batch(vector_store_id: str, batch_id: str, stores: StoreApi) -> FileBatch:
    return await asyncio.to_thread(stores.batch, vector_store_id, batch_id)


@post(
    STORE + "/search",
    status_code=200,
    opt=route(needs("stores:read", store="read"), IN_STORE_BODY, body="SearchRequest"),
    operation_id="searchVectorStore",
    tags=TAGS,
    summary="Hybrid search of a store, with attribute filters",
)
async def search_store(vector_store_id: str, request: Request, stores: StoreApi) -> SearchResults:
    body = await decode_body(request, SearchRequest)
    return await asyncio.to_thread(stores.search, vector_store_id, body)


ROUTES = [
    create_store, list_stores, get_store, update_store, delete_store, attach_file, list_files,
    get_file, update_file, detach_file, create_batch, get_batch, search_store,
]  # fmt: skip
