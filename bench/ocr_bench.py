"""OCR of generated scans: tesserocr (in-process, what ragserve uses) against pytesseract
(the `tesseract` command per page), and Tesseract's page layouts, in one run.

    python bench/ocr_bench.py [--repeat 5] [--dpi 300]

Pages: a short Korean page, a short English one and a dense Korean one (19 lines), drawn
with NanumGothic at --dpi as a scanner would deliver them (tests/pdfgen.py). Prints per
page the median seconds of each binding (the baseline: pytesseract, same image, same
language data, same layout) and the character accuracy (1 - edit distance / length,
whitespace ignored) of layout 6 (one block, what ragserve uses) against layout 3 (automatic).
Needs `pip install tesserocr pytesseract` and Debian's tesseract-ocr, -kor, -eng.
"""

from __future__ import annotations

import argparse
import os
import time

from _common import median, report

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as in the extraction workers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dpi", type=int, default=300)
    args = ap.parse_args()
    import pytesseract
    import tesserocr
    from pdfgen import SCAN_EN, SCAN_KO, SCAN_KO_DENSE, text_image
    from pdfgen import char_accuracy as accuracy

    from ragserve.ingest.ocr import find_tessdata

    tessdata, problem = find_tessdata("kor+eng")
    if tessdata is None:
        raise SystemExit(problem)
    apis = {
        psm: tesserocr.PyTessBaseAPI(path=tessdata.rstrip("/") + "/", lang="kor+eng", psm=psm)
        for psm in (3, 6)
    }
    print(f"Tesseract {tesserocr.tesseract_version().splitlines()[0]}, data {tessdata}")
    pages = (("Korean, 3 lines", SCAN_KO), ("English, 3", SCAN_EN), ("Korean, 19", SCAN_KO_DENSE))
    for name, lines in pages:
        image, truth = text_image(lines, args.dpi), "\n".join(lines)
        inproc, command = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            apis[6].SetImage(image)
            read = apis[6].GetUTF8Text()
            inproc.append(time.perf_counter() - t)
            t = time.perf_counter()
            pytesseract.image_to_string(image, lang="kor+eng", config="--psm 6")
            command.append(time.perf_counter() - t)
        apis[3].SetImage(image)
        auto = apis[3].GetUTF8Text()
        print(f"-- {name}")
        report("  tesserocr s/page (vs pytesseract)", median(inproc), median(command), "s")
        print(
            f"  accuracy: one block (PSM 6) {accuracy(read, truth):.3f}, "
            f"automatic layout (PSM 3) {accuracy(auto, truth):.3f}"
        )
    for api in apis.values():
        api.End()


if __name__ == "__main__":
    main()
