"""GET /v1/files, /v1/files/{file_id}, /v1/files/{file_id}/content."""

from __future__ import annotations

import asyncio

from litestar import get
from litestar.response import File

from .protocol import FileList, FileObject
from .service import FileService


@get(
    "/v1/files",
    summary="List the PDFs in the library",
    operation_id="listFiles",
    tags=["files"],
)
async def list_files(files: FileService) -> FileList:
    return await asyncio.to_thread(files.list)


@get(
    "/v1/files/{file_id:str}",
    summary="Describe one PDF of the library",
    operation_id="retrieveFile",
    tags=["files"],
)
async def retrieve_file(file_id: str, files: FileService) -> FileObject:
    return await asyncio.to_thread(files.retrieve, file_id)


@get(
    "/v1/files/{file_id:str}/content",
    summary="The PDF itself (citation links add #page=N; with API keys, a signed ?token= "
    "works without a key)",
    operation_id="downloadFile",
    tags=["files"],
    media_type="application/pdf",
)
async def file_content(file_id: str, files: FileService) -> File:
    path, name = await asyncio.to_thread(files.content, file_id)
    return File(
        path, filename=name, media_type="application/pdf", content_disposition_type="inline"
    )
