"""/v1/files: upload, list, describe, download, delete."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from litestar import Request, delete, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.params import Body, Parameter
from litestar.response import File

from ragserve.errors import InvalidRequest

from ..access.policy import needs, principal_of
from ..operations import ALWAYS, GET, PAGE_400, POST, route
from ..pages import Cursor, Order, Page
from .protocol import FileDeleted, FileList, FileObject
from .service import FILES_PAGE_MAX, FileService

MULTIPART_SLACK = 64 * 1024  # the form's own fields and boundaries
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "contentMediaType": "application/octet-stream"},
                    "purpose": {"type": "string", "enum": ["assistants", "user_data"]},
                },
                "required": ["file", "purpose"],
            }
        }
    },
}
TOKEN_PARAMETER = {
    "name": "token",
    "in": "query",
    "required": False,
    "description": "a citation link's signature (`expiry.hmac`): opens this file without an "
    "API key until it expires",
    "schema": {"type": "string"},
}


def _upload_spec(operation: dict[str, Any]) -> None:
    operation["requestBody"] = UPLOAD_BODY


def _content_spec(operation: dict[str, Any]) -> None:
    """The signed-link parameter, and the media types a file is served as."""
    operation["parameters"] = [*operation.get("parameters", []), TOKEN_PARAMETER]
    ok = operation["responses"]["200"]
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    ok["content"] = {
        "application/pdf": {"schema": {"type": "string", "contentMediaType": "application/pdf"}},
        "text/plain": {"schema": {"type": "string"}},  # text, Markdown, HTML (never rendered)
        "application/octet-stream": {"schema": binary},  # Word, Hangul: downloaded
    }
    ok["headers"]["last-modified"]["schema"] = {"type": "string"}  # an HTTP-date, not ISO


def upload_route(max_bytes: int) -> HTTPRouteHandler:
    """POST /v1/files, with the body limit of the settings (files are larger than JSON)."""

    @post(
        "/v1/files",
        status_code=200,
        summary="Upload a file (multipart: file, purpose); PDF, text, Markdown, HTML, Word "
        "(.docx) and Hangul (.hwpx) are read when attached to a vector store",
        opt=route(
            needs("files:write", audit=True),
            {
                **POST,
                400: "empty, too large, or a field missing (`param` says which)",
                403: "an upload from a web page of another origin (no API key configured)",
            },
            patch=_upload_spec,
        ),
        operation_id="createFile",
        tags=["files"],
        request_max_body_size=max_bytes + MULTIPART_SLACK,
    )
    async def create_file(
        request: Request,
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
        files: FileService,
    ) -> FileObject:
        upload = data.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("send the file as the multipart field 'file'", param="file")
        purpose = data.get("purpose")
        if not isinstance(purpose, str):
            raise InvalidRequest("the multipart field 'purpose' is required", param="purpose")
        return await asyncio.to_thread(
            files.upload,
            upload.file,
            upload.filename or "document.pdf",
            purpose,
            principal_of(request).name,
        )

    return create_file


@get(
    "/v1/files",
    summary="List the library's PDFs",
    opt=route(needs("files:read"), {**GET, 400: PAGE_400}),
    operation_id="listFiles",
    tags=["files"],
)
async def list_files(
    request: Request,
    files: FileService,
    limit: Annotated[int, Parameter(ge=1, le=FILES_PAGE_MAX)] = FILES_PAGE_MAX,
    after: Cursor = None,
    before: Cursor = None,
    order: Order = "desc",
    purpose: Annotated[str | None, Parameter(max_length=64)] = None,
) -> FileList:
    page = Page(limit, after, before, order)
    return await asyncio.to_thread(files.list, principal_of(request), page, purpose)


@get(
    "/v1/files/{file_id:str}",
    summary="Describe one PDF of the library",
    opt=route(needs("files:read"), {**GET, 404: "no such file in the library"}),
    operation_id="retrieveFile",
    tags=["files"],
)
async def retrieve_file(file_id: str, request: Request, files: FileService) -> FileObject:
    return await asyncio.to_thread(files.retrieve, file_id, principal_of(request))


@delete(
    "/v1/files/{file_id:str}",
    status_code=200,
    summary="Delete an uploaded PDF (and remove it from every vector store)",
    opt=route(
        needs("files:write", audit=True),
        {
            **GET,
            404: "no such file",
            409: "the file belongs to the server's own corpus (remove it there)",
        },
    ),
    operation_id="deleteFile",
    tags=["files"],
)
async def delete_file(file_id: str, request: Request, files: FileService) -> FileDeleted:
    return await asyncio.to_thread(files.delete, file_id, principal_of(request))


@get(
    "/v1/files/{file_id:str}/content",
    summary="The file itself (citation links to a PDF add #page=N; with API keys, a signed "
    "?token= works without a key)",
    opt=route(
        {**needs("files:read"), "link": True},
        {
            401: "no API key and no signed token (when keys are configured)",
            403: "the signed token expired, was altered, or is for another file",
            404: "no such file, or it changed since it was indexed",
            421: POST[421],
            **ALWAYS,
        },
        patch=_content_spec,
    ),
    operation_id="downloadFile",
    tags=["files"],
    media_type="application/pdf",
)
async def file_content(file_id: str, request: Request, files: FileService) -> File:
    """A PDF opens in the browser; text formats (HTML too: never rendered as a page of
    this server) show as plain text; the rest download. The browser may not sniff another
    type (nosniff), and what is not a PDF is sandboxed (Chrome's PDF viewer refuses a
    sandboxed document, so a PDF is not)."""
    path, name, sniffed = await asyncio.to_thread(files.content, file_id, principal_of(request))
    headers = {"X-Content-Type-Options": "nosniff"}
    if sniffed.kind != "pdf":
        headers["Content-Security-Policy"] = "sandbox"
    inline = sniffed.kind in ("pdf", "text", "markdown", "html")
    return File(
        path,
        filename=name,
        media_type=sniffed.media_type(),
        encoding=sniffed.charset,
        content_disposition_type="inline" if inline else "attachment",
        headers=headers,
    )
