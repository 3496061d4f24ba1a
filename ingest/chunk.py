"""Chunking by tokens of the embedding model's own tokenizer, with overlap."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping

import msgspec

from ragserve.retrieval.store import Chunk

PAGE_SEPARATOR = "\n\n"
_BREAK_CHARS = ".!?。？！\n"


def join_pages(pages: list[str]) -> tuple[str, list[int]]:
    """The document's text and the character offset where each page starts."""
    starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for page in pages:
        starts.append(offset)
        parts.append(page)
        offset += len(page) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(parts), starts


def chunk_document(
    pages: list[str],
    token_spans: Callable[[str], list[tuple[int, int]]],
    *,
    chunk_tokens: int,
    overlap: int,
    within_pages: bool = False,
) -> list[Chunk]:
    """Split a document into windows of `chunk_tokens` tokens overlapping by `overlap`.

    A window ends at a sentence or line break in its last quarter when there is one,
    so chunks rarely cut a sentence in half. Pages are 1-based in the result.
    `within_pages`: no window spans two pages (the sections of a format without pages,
    so that each chunk is in one place: its heading, its lines).
    """
    if overlap >= chunk_tokens:
        raise ValueError("chunk overlap must be smaller than the chunk size")
    text, page_starts = join_pages(pages)
    spans = [s for s in token_spans(text) if s[1] > s[0]]
    # the first token of each page after the first: where a window must stop
    page_ends = [bisect.bisect_left(spans, (p, -1)) for p in page_starts[1:]] + [len(spans)]
    chunks: list[Chunk] = []
    start = 0
    while start < len(spans):
        end = min(start + chunk_tokens, len(spans))
        boundary = len(spans)
        if within_pages:
            boundary = page_ends[bisect.bisect_right(page_starts, spans[start][0]) - 1]
            end = min(end, boundary)
        if end < boundary:
            end = _snap_end(text, spans, start, end)
        char_start, char_end = spans[start][0], spans[end - 1][1]
        body = text[char_start:char_end].strip()
        if body:
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    page_start=bisect.bisect_right(page_starts, char_start),
                    page_end=bisect.bisect_right(page_starts, char_end - 1),
                    char_start=char_start,
                    char_end=char_end,
                    text=body,
                )
            )
        if end >= len(spans):
            break
        start = end if end == boundary else max(end - overlap, start + 1)
    return chunks


def mark_ocr(chunks: list[Chunk], confidence: Mapping[int, float]) -> list[Chunk]:
    """The chunks, each that spans an OCR'd page (`confidence`: 1-based page -> Tesseract's
    mean confidence) marked with the mean confidence of the OCR'd pages it spans."""
    if not confidence:
        return chunks
    marked = []
    for c in chunks:
        read = [confidence[p] for p in range(c.page_start, c.page_end + 1) if p in confidence]
        if read:
            c = msgspec.structs.replace(c, ocr_confidence=round(sum(read) / len(read), 1))
        marked.append(c)
    return marked


def mark_locations(chunks: list[Chunk], locations: list[str]) -> list[Chunk]:
    """For a format without pages (`locations`: where each section is, e.g. a heading
    path), each chunk marked with where its first section is."""
    if not locations:
        return chunks
    return [msgspec.structs.replace(c, location=locations[c.page_start - 1]) for c in chunks]


def _snap_end(text: str, spans: list[tuple[int, int]], start: int, end: int) -> int:
    floor = start + (end - start) * 3 // 4
    for i in range(end, floor, -1):
        last_char = text[spans[i - 1][1] - 1]
        following = text[spans[i - 1][1] : spans[i][0]]
        if last_char in _BREAK_CHARS or "\n" in following:
            return i
    return end
