"""OCR's share of a whole ingest: a corpus with --scanned-share of its pages scanned (image
only, as a scanner or fax delivers them), against the same corpus with every page typed
(the same lines as a text layer), in one run.

    python bench/ocr_ingest_bench.py [--files 10] [--pages 5] [--scanned-share 0.2]

Prints, medians of --repeat runs with the same workers (default: every core):
- extraction (the worker pool: pypdf/pdfium, and Tesseract where a page has no text) of
  the mixed corpus against the typed one, and from the difference OCR's pages/s;
- the whole ingest (extract, chunk, embed, index) of each, and OCR's share of the mixed
  corpus's total time: (mixed - typed) / mixed;
- how many pages were OCR'd (must be the scanned ones, and only those), and the character
  accuracy of what OCR read on them.
Needs Tesseract's kor+eng data (Debian tesseract-ocr-kor, tesseract-ocr-eng).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from _common import median, report

SENTENCES_KO = (
    "본 사업은 지역 기반시설 개선을 목적으로 하며 계약금액과 일정은 다음과 같다.",
    "담당 부서는 분기마다 진행 상황을 점검하고 결과를 보고한다.",
    "계약 상대자는 착공 전에 안전관리 계획서를 제출하여야 한다.",
    "대금은 검수가 끝난 날부터 열흘 안에 지급한다.",
    "설계 변경이 필요한 경우 발주처와 협의하여 정한다.",
)
SENTENCES_EN = (
    "This section describes the scope of work and the schedule of the project.",
    "Each party reports its progress to the steering committee every quarter.",
    "Invoices are paid within ten days of the acceptance of the deliverables.",
)


def page_lines(rng: random.Random, doc: int, page: int) -> list[str]:
    """A dense office page: a heading with an id, then 18 lines, mostly Korean."""
    lines = [f"문서 {doc} / Document {doc}, page {page + 1}", f"ID KR-{rng.randint(1000, 9999)}"]
    for _ in range(18):
        pool = SENTENCES_EN if rng.random() < 0.25 else SENTENCES_KO
        lines.append(rng.choice(pool))
    return lines


def make_corpora(root: Path, files: int, pages: int, share: float, seed: int = 1):
    """(mixed folder, typed folder, the scanned pages' lines): the same pages in both; in
    the mixed one every page whose running number falls on the share is an image."""
    from pdfgen import scanned_pdf

    rng = random.Random(seed)
    every = max(1, round(1 / share)) if share > 0 else 0
    scanned_lines: dict[tuple[str, int], list[str]] = {}  # (file, page): its lines
    for i in range(files):
        mixed, typed = [], []
        for p in range(pages):
            lines = page_lines(rng, i, p)
            typed.append(("text", lines))
            if every and (i * pages + p) % every == every - 1:
                mixed.append(lines)
                scanned_lines[(f"doc_{i:03d}.pdf", p + 1)] = lines
            else:
                mixed.append(("text", lines))
        scanned_pdf(root / "mixed" / f"doc_{i:03d}.pdf", mixed)
        scanned_pdf(root / "typed" / f"doc_{i:03d}.pdf", typed)
    return root / "mixed", root / "typed", scanned_lines


def extract_all(folder: Path, workers: int, ocr) -> tuple[float, list]:
    import functools

    from ragserve.ingest.extract import extract_document
    from ragserve.ingest.pool import ExtractPool

    fn = functools.partial(extract_document, ocr=ocr)
    tasks = [str(p) for p in sorted(folder.glob("*.pdf"))]
    t = time.perf_counter()
    with ExtractPool(workers, timeout_s=600, memory_limit_mb=2048, fn=fn) as pool:
        results = [(Path(task).name, r) for task, r in pool.imap_unordered(tasks)]
    return time.perf_counter() - t, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--pages", type=int, default=5)
    ap.add_argument("--scanned-share", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from pdfgen import char_accuracy

    from ragserve.ingest.ocr import ocr_settings
    from ragserve.ingest.pipeline import IngestOptions, run_ingest
    from ragserve.retrieval.embedder import SentenceTransformerEmbedder

    ocr = ocr_settings("auto", "kor+eng", 300, 120.0)
    if not ocr.on:
        raise SystemExit("OCR is off: install Tesseract's kor+eng data (tesseract-ocr-kor)")
    work = Path(tempfile.mkdtemp(prefix="ragserve-ocr-bench-"))
    try:
        mixed, typed, truth = make_corpora(work, args.files, args.pages, args.scanned_share)
        total_pages = args.files * args.pages
        print(
            f"corpus: {args.files} PDFs x {args.pages} pages, {len(truth)} of {total_pages} "
            f"scanned at 300 dpi ({len(truth) / total_pages:.0%}); {os.cpu_count()} cores, "
            f"{args.workers} workers, Tesseract data {ocr.tessdata}"
        )
        # what OCR read, checked once: only the scanned pages, and how well
        _, results = extract_all(mixed, args.workers, ocr)
        read = {(name, o.page): r.pages[o.page - 1] for name, r in results for o in r.ocr}
        assert read.keys() == truth.keys(), f"OCR'd {sorted(read)}, scanned {sorted(truth)}"
        accuracy = [char_accuracy(read[key], "\n".join(lines)) for key, lines in truth.items()]
        print(
            f"OCR'd pages: {len(read)}, the scanned ones (typed pages are never OCR'd); "
            f"character accuracy median {median(accuracy):.3f}, min {min(accuracy):.3f}"
        )

        ext_mixed, ext_typed = [], []
        for _ in range(args.repeat):
            ext_typed.append(extract_all(typed, args.workers, ocr)[0])
            ext_mixed.append(extract_all(mixed, args.workers, ocr)[0])
        report("extraction s (mixed vs all typed)", median(ext_mixed), median(ext_typed), "s")
        ocr_s = median(ext_mixed) - median(ext_typed)
        print(
            f"OCR: {len(truth) / ocr_s:.2f} pages/s on {args.workers} workers "
            f"({ocr_s / len(truth) * args.workers:.2f} s per page per core)"
        )

        embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu")
        embedder.load()
        full_mixed, full_typed = [], []
        for n in range(args.repeat):
            for folder, times in ((typed, full_typed), (mixed, full_mixed)):
                options = IngestOptions(
                    index_dir=work / f"index-{folder.name}-{n}",
                    paths=[folder],
                    workers=args.workers,
                    timeout_s=600,
                    ocr=ocr,
                )
                t = time.perf_counter()
                s = run_ingest(options, embedder)
                times.append(time.perf_counter() - t)
                assert s.ingested == args.files and s.failed == 0, s
                print(
                    f"  ingest {folder.name}: {s.pages} pages, {s.chunks} chunks, "
                    f"{s.ocr_pages} OCR'd, {times[-1]:.1f} s",
                    flush=True,
                )
        report("whole ingest s (mixed vs all typed)", median(full_mixed), median(full_typed), "s")
        share = (median(full_mixed) - median(full_typed)) / median(full_mixed)
        print(
            f"OCR's share of the whole ingest with {len(truth) / total_pages:.0%} scanned "
            f"pages: {share:.0%} ({median(full_mixed):.1f} s of which OCR "
            f"{median(full_mixed) - median(full_typed):.1f} s)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
