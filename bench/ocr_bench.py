"""OCR of generated scans: ragserve's page reader against plain Tesseract, and tesserocr
(in-process, what ragserve uses) against pytesseract (the `tesseract` command per page),
in one run.

    python bench/ocr_bench.py [--repeat 5] [--dpi 300]

Pages: a short Korean page, a short English one and a dense Korean one (19 lines), drawn
with NanumGothic at 300 dpi as a scanner would deliver them and embedded in a PDF
(tests/pdfgen.py), rendered back by pdfium at --dpi as the ingest does. Prints per page the
median seconds and the character accuracy (1 - edit distance / length, whitespace ignored)
of:
- ragserve's reader (ingest/ocr.py: one block, unsure second-language words read again in
  the first language) against one plain reading of the same image (tesserocr, one block);
- tesserocr against pytesseract (the baseline binding: same image, language data, layout);
- Tesseract's automatic layout (PSM 3), for the record.
Needs `pip install tesserocr pytesseract` and Debian's tesseract-ocr-kor, -eng.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import median, report

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as in the extraction workers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dpi", type=int, default=300)
    args = ap.parse_args()
    import pypdfium2
    import pytesseract
    import tesserocr
    from pdfgen import SCAN_EN, SCAN_KO, SCAN_KO_DENSE, scanned_pdf
    from pdfgen import char_accuracy as accuracy

    from ragserve.ingest.ocr import PageReader, ocr_settings

    settings = ocr_settings("auto", "kor+eng", args.dpi, 120.0)
    if settings.tessdata is None:
        raise SystemExit("no Tesseract data for kor+eng (apt-get install tesseract-ocr-kor)")
    apis = {
        psm: tesserocr.PyTessBaseAPI(
            path=settings.tessdata.rstrip("/") + "/", lang="kor+eng", psm=psm
        )
        for psm in (3, 6)
    }
    print(f"Tesseract {tesserocr.tesseract_version().splitlines()[0]}, data {settings.tessdata}")
    has_command = shutil.which("tesseract") is not None
    if not has_command:
        print("no `tesseract` command (Debian tesseract-ocr): pytesseract is not measured")
    pages = (("Korean, 3 lines", SCAN_KO), ("English, 3", SCAN_EN), ("Korean, 19", SCAN_KO_DENSE))
    with tempfile.TemporaryDirectory() as tmp:
        pdf = pypdfium2.PdfDocument(
            str(scanned_pdf(Path(tmp) / "scans.pdf", [p for _, p in pages]))
        )
        for index, (name, lines) in enumerate(pages):
            truth = "\n".join(lines)
            bitmap = pdf[index].render(scale=args.dpi / 72, grayscale=True)
            image = bitmap.to_pil()
            ours, plain, command = [], [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                mine = PageReader.read(pdf[index], settings).text
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()  # the same render, then one reading
                page = pdf[index].render(scale=args.dpi / 72, grayscale=True)
                apis[6].SetImage(page.to_pil())
                once = apis[6].GetUTF8Text()
                plain.append(time.perf_counter() - t)
                page.close()
                if has_command:
                    t = time.perf_counter()
                    pytesseract.image_to_string(image, lang="kor+eng", config="--psm 6")
                    command.append(time.perf_counter() - t)
            apis[3].SetImage(image)
            auto = apis[3].GetUTF8Text()
            print(f"-- {name}")
            report(
                "  ragserve's reader s/page (vs render + one reading)",
                median(ours),
                median(plain),
                "s",
            )
            if command:
                report(
                    "  render + tesserocr s/page (vs pytesseract)",
                    median(plain),
                    median(command),
                    "s",
                )
            print(
                f"  accuracy: ragserve {accuracy(mine, truth):.3f}, one reading (PSM 6) "
                f"{accuracy(once, truth):.3f}, automatic layout (PSM 3) "
                f"{accuracy(auto, truth):.3f}"
            )
    for api in apis.values():
        api.End()


if __name__ == "__main__":
    main()
