"""OCR of generated scans: tesserocr (in-process, what ragserve uses) against pytesseract
(the `tesseract` command per page), and Tesseract's page layouts, in one run.

    python bench/ocr_bench.py [--repeat 5] [--dpi 300]

Pages: a short Korean page, a short English one and a dense Korean one (21 lines), drawn
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

KO = [
    "서울시 도로 보수 사업 보고서",
    "계약번호 KR-2024-0173 의 계약금액은 5억원입니다.",
    "담당자는 김민수 과장이며, 준공 예정일은 2025년 3월 31일입니다.",
]
EN = [
    "Project Heron maintenance report",
    "The budget of Project Heron is 7.9 million dollars.",
    "The steering committee meets every Thursday in Gwangju.",
]
DENSE = (
    KO
    + [
        "본 사업은 지역 기반시설 개선을 목적으로 하며 계약금액과 일정은 다음과 같다.",
        "담당 부서는 분기마다 진행 상황을 점검하고 결과를 보고한다.",
    ]
    * 9
)


def accuracy(read: str, truth: str) -> float:
    a, b = "".join(read.split()), "".join(truth.split())
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1 - prev[-1] / max(1, len(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dpi", type=int, default=300)
    args = ap.parse_args()
    import pytesseract
    import tesserocr
    from pdfgen import text_image

    from ragserve.ingest.ocr import find_tessdata

    tessdata, problem = find_tessdata("kor+eng")
    if tessdata is None:
        raise SystemExit(problem)
    apis = {
        psm: tesserocr.PyTessBaseAPI(path=tessdata.rstrip("/") + "/", lang="kor+eng", psm=psm)
        for psm in (3, 6)
    }
    print(f"Tesseract {tesserocr.tesseract_version().splitlines()[0]}, data {tessdata}")
    for name, lines in (("Korean, 3 lines", KO), ("English, 3 lines", EN), ("Korean, 21", DENSE)):
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
