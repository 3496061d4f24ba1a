import re

import pytest

from ragserve.ingest.chunk import chunk_document, join_pages, mark_ocr


def word_spans(text: str) -> list[tuple[int, int]]:
    """A fake tokenizer: one token per word."""
    return [m.span() for m in re.finditer(r"\S+", text)]


def test_chunks_overlap_and_keep_pages_and_offsets():
    pages = [" ".join(f"a{i}" for i in range(30)), " ".join(f"b{i}" for i in range(30))]
    chunks = chunk_document(pages, word_spans, chunk_tokens=20, overlap=5)
    text, _ = join_pages(pages)
    assert chunks[0].page_start == 1 and chunks[-1].page_end == 2
    assert any(c.page_start == 1 and c.page_end == 2 for c in chunks)
    for c in chunks:
        assert text[c.char_start : c.char_end].strip() == c.text
        assert len(c.text.split()) <= 20
    # neighbours share `overlap` tokens
    first, second = chunks[0].text.split(), chunks[1].text.split()
    assert first[-5:] == second[:5]
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_chunks_prefer_sentence_ends():
    sentence = "one two three four five six seven eight nine ten."
    chunks = chunk_document([" ".join([sentence] * 5)], word_spans, chunk_tokens=24, overlap=4)
    assert chunks[0].text.endswith("ten.")


def test_overlap_must_be_smaller_than_chunk():
    with pytest.raises(ValueError):
        chunk_document(["x"], word_spans, chunk_tokens=10, overlap=10)


def test_empty_document_has_no_chunks():
    assert chunk_document([""], word_spans, chunk_tokens=10, overlap=2) == []


def test_chunks_within_pages_never_span_two_and_cover_every_page():
    pages = ["a " * 7, "b " * 50, "c " * 3]
    chunks = chunk_document(pages, word_spans, chunk_tokens=20, overlap=5, within_pages=True)
    assert all(c.page_start == c.page_end for c in chunks)
    assert [c.page_start for c in chunks] == [1, 2, 2, 2, 3]
    for page in (1, 2, 3):
        words = " ".join(c.text for c in chunks if c.page_start == page).split()
        assert set(words) == {"abc"[page - 1]}
    assert len(chunk_document(pages, word_spans, chunk_tokens=20, overlap=5)) < len(chunks)


def test_chunks_over_ocr_pages_carry_the_mean_confidence_of_those_pages():
    pages = [" ".join(f"{p}w{i}" for i in range(30)) for p in "abc"]
    chunks = chunk_document(pages, word_spans, chunk_tokens=20, overlap=5)
    marked = mark_ocr(chunks, {2: 90.0, 3: 70.0})
    assert [c.text for c in marked] == [c.text for c in chunks]
    for c in marked:
        read = [{2: 90.0, 3: 70.0}[p] for p in range(c.page_start, c.page_end + 1) if p > 1]
        assert c.ocr_confidence == (round(sum(read) / len(read), 1) if read else None)
    assert {c.ocr_confidence for c in marked} >= {None, 90.0, 80.0, 70.0}
    assert mark_ocr(chunks, {}) == chunks
