"""/v1/vector_stores wire types, in the shape of OpenAI's reference (the SDKs parse them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from ..protocol import AttributeValue, Filter, Request, Response

MAX_FILE_IDS = 500
Attributes = Annotated[
    dict[Annotated[str, Meta(max_length=64)], AttributeValue], Meta(max_length=16)
]  # OpenAI's limits: 16 keys, 64-character keys, 512-character strings
Metadata = Annotated[
    dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=512)]],
    Meta(max_length=16),
]
FileId = Annotated[str, Meta(max_length=64)]


class CreateVectorStore(Request):
    name: Annotated[str, Meta(max_length=256)] = ""
    file_ids: Annotated[list[FileId], Meta(max_length=MAX_FILE_IDS)] = []
    metadata: Metadata | None = None
    expires_after: Any = None  # accepted; stores do not expire here
    chunking_strategy: Any = None  # accepted; the index's chunking applies


class UpdateVectorStore(Request):
    name: Annotated[str, Meta(max_length=256)] | None = None
    metadata: Metadata | None = None
    expires_after: Any = None


class FileCounts(Response):
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class VectorStore(Response):
    id: str
    created_at: int
    name: str
    usage_bytes: int
    file_counts: FileCounts
    status: Literal["expired", "in_progress", "completed"]
    last_active_at: int | None
    metadata: dict[str, str]
    object: Literal["vector_store"] = "vector_store"
    expires_after: None = None
    expires_at: None = None


class VectorStoreList(Response):
    data: list[VectorStore]
    object: Literal["list"] = "list"
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


class VectorStoreDeleted(Response):
    id: str
    object: Literal["vector_store.deleted"] = "vector_store.deleted"
    deleted: bool = True


class CreateStoreFile(Request):
    file_id: FileId
    attributes: Attributes | None = None
    chunking_strategy: Any = None


class UpdateStoreFile(Request):
    attributes: Attributes


class CreateBatch(Request):
    file_ids: Annotated[list[FileId], Meta(min_length=1, max_length=MAX_FILE_IDS)]
    attributes: Attributes | None = None
    chunking_strategy: Any = None


class LastError(Response):
    code: Literal["server_error", "unsupported_file", "invalid_file"]
    message: str


class IngestReport(Response, omit_defaults=True):
    """ragserve's addition to a vector store file: what reading it found. A completed file
    with `unread_pages` is in the store without those pages' text; `note` says why."""

    format: str = ""  # pdf, text, markdown, html, docx, hwpx
    pages: int = 0  # a PDF's pages
    sections: int = 0  # a format without pages: its sections (the text under a heading)
    chunks: int = 0
    ocr_pages: int = 0  # pages whose text Tesseract read from the page image
    ocr_failed_pages: int = 0  # scanned pages OCR could not read (its time limit, an error)
    ocr_skipped_pages: int = 0  # scanned pages not read because OCR is off
    unread_pages: int = 0
    note: str = ""


class VectorStoreFile(Response):
    id: str
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    usage_bytes: int
    last_error: LastError | None
    attributes: dict[str, Any]
    object: Literal["vector_store.file"] = "vector_store.file"
    ingest: IngestReport | None = None  # once its ingest ran (a ragserve extension)


class VectorStoreFileList(Response):
    data: list[VectorStoreFile]
    object: Literal["list"] = "list"
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


class VectorStoreFileDeleted(Response):
    id: str
    object: Literal["vector_store.file.deleted"] = "vector_store.file.deleted"
    deleted: bool = True


class FileBatch(Response):
    id: str
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    file_counts: FileCounts
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"


class RankingOptions(Request):
    ranker: str | None = None
    score_threshold: Annotated[float, Meta(ge=0, le=1)] | None = None


class SearchRequest(Request):
    query: (
        Annotated[str, Meta(min_length=1, max_length=4096)]
        | Annotated[list[Annotated[str, Meta(max_length=4096)]], Meta(min_length=1, max_length=8)]
    )
    max_num_results: Annotated[int, Meta(ge=1, le=50)] = 10
    filters: Filter | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False


class SearchContent(Response):
    text: str
    type: Literal["text"] = "text"


class SearchResult(Response):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any]
    content: list[SearchContent]
    # ragserve's additions: where in the file the passage is, and where its text came from
    page: int | None = None  # None: a format without pages; `location` says where
    page_end: int | None = None
    location: str | None = None
    origin: Literal["text", "ocr"] = "text"
    ocr_confidence: float | None = None


class SearchResults(Response):
    search_query: list[str]
    data: list[SearchResult]
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    has_more: bool = False
    next_page: None = None


STORE_TYPES = (  # for the OpenAPI document
    CreateVectorStore,
    UpdateVectorStore,
    VectorStore,
    VectorStoreList,
    VectorStoreDeleted,
    CreateStoreFile,
    UpdateStoreFile,
    CreateBatch,
    VectorStoreFile,
    VectorStoreFileList,
    VectorStoreFileDeleted,
    FileBatch,
    SearchRequest,
    SearchResults,
)
