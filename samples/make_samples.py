"""Regenerate the demo corpus: `python samples/make_samples.py` (needs the test extra).

The PDFs are committed, so the demo never needs this; it documents where they came from.
Every fact in them is invented.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from pdfgen import write_pdf  # noqa: E402

DOCS = {
    "falcon-annual-report-2025.pdf": [
        [
            "Project Falcon - Annual Report 2025",
            "Project Falcon modernises the flood-warning network of the Han river basin.",
            "The total budget approved for 2025 was 4.2 million US dollars, of which 3.9 million "
            "were spent by December.",
            "The project manager is Alice Smith; the technical lead is Minjun Park.",
        ],
        [
            "Milestones",
            "In March 2025, 120 new river-level sensors were installed between Seoul and "
            "Yangpyeong.",
            "In September 2025, the warning time for residents improved from 40 to 95 minutes.",
            "The steering committee meets every first Tuesday of the month in Daejeon.",
        ],
        [
            "Risks and next steps",
            "The main risk is the supply of solar-powered sensor masts, delayed by six weeks.",
            "For 2026 the team plans to extend the network to the Imjin river.",
        ],
    ],
    "도로보수-계약서.pdf": [
        [
            "서울시 도로 보수 사업 계약서",
            "계약번호: KR-2024-0173",
            "본 계약은 서울특별시 강북구 일대 도로의 포장 보수 공사에 관한 것이다.",
            "총 계약금액은 5억 2천만원(부가가치세 포함)이며, 공사 기간은 2024년 4월 1일부터 "
            "2024년 10월 31일까지로 한다.",
        ],
        [
            "제2조 (담당자 및 연락처)",
            "발주처 담당자는 도시기반시설본부 김민수 과장이다.",
            "시공사 현장대리인은 이서연 부장이며, 주간 공정 보고서를 매주 금요일에 제출한다.",
            "제3조 (지체상금) 준공이 지연될 경우 1일당 계약금액의 0.1%를 지체상금으로 부과한다.",
        ],
    ],
    "travel-policy-출장규정.pdf": [
        [
            "Travel policy / 출장 규정 (2025)",
            "Employees book flights through the company travel desk at least 14 days in advance.",
            "The daily meal allowance is 60,000 won in Korea and 80 US dollars abroad.",
            "국내 출장 시 숙박비는 1박당 최대 12만원까지 실비로 정산한다.",
            "해외 출장은 본부장의 사전 승인이 필요하며, 귀국 후 7일 이내에 출장 보고서를 제출한다.",
        ],
    ],
}


def main() -> None:
    for name, pages in DOCS.items():
        write_pdf(HERE / name, pages, title=name.removesuffix(".pdf"))
        print(HERE / name)


if __name__ == "__main__":
    main()
