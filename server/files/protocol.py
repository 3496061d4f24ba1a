"""/v1/files wire types, in the shape of OpenAI's file object."""

from __future__ import annotations

from typing import Literal

from ..protocol import Response


class FileObject(Response):
    id: str
    bytes: int
    created_at: int
    filename: str
    object: Literal["file"] = "file"
    purpose: str = "assistants"
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None


class FileList(Response):
    data: list[FileObject]
    object: Literal["list"] = "list"
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


class FileDeleted(Response):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
