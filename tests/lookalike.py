"""Look-alike purchase requests (Korean and English): one template, different departments,
items, vendors, people, dates and document numbers; one question per document, of five
kinds, each answerable by that document alone."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
from corpus import KO_GIVEN
from corpus import KO_SURNAMES as CORPUS_KO_SURNAMES
from pdfgen import write_pdf

KO_DEPTS = [
    ("기술", "기술연구소"),
    ("송출", "송출운영팀"),
    ("스포", "스포츠제작팀"),
    ("보도", "보도국"),
    ("경영", "경영지원팀"),
    ("편성", "편성기획팀"),
    ("미술", "미술센터"),
    ("시설", "시설관리팀"),
]
EN_DEPTS = [
    ("TECH", "Technology Lab"),
    ("OPS", "Broadcast Operations"),
    ("SPRT", "Sports Production"),
    ("NEWS", "Newsroom"),
    ("ADMIN", "Administration"),
    ("PLAN", "Programme Planning"),
    ("ART", "Art Centre"),
    ("FAC", "Facilities"),
]
# (Korean item, a Korean paraphrase, English item, an English paraphrase)
ITEMS = [
    ("노트북", "휴대용 컴퓨터", "laptop", "portable computers"),
    ("모니터", "화면 표시 장치", "monitor", "display screens"),
    ("카메라", "촬영 장비", "camera", "filming equipment"),
    ("삼각대", "카메라 받침대", "tripod", "camera stands"),
    ("마이크", "음성 수음 장비", "microphone", "sound pickup devices"),
    ("조명기", "조명 장비", "lighting kit", "studio lamps"),
    ("서버", "전산 장비", "server", "rack computers"),
    ("프린터", "인쇄 장비", "printer", "printing machines"),
    ("의자", "사무용 좌석", "office chair", "desk seating"),
    ("헤드셋", "머리에 쓰는 음향 장비", "headset", "head-worn audio gear"),
]
KO_SURNAMES = [*CORPUS_KO_SURNAMES, "한", "오"]
EN_FIRST = [
    "Alice",
    "Brian",
    "Chloe",
    "Daniel",
    "Emma",
    "Felix",
    "Grace",
    "Henry",
    "Isla",
    "Jacob",
    "Karen",
    "Liam",
]
EN_LAST = [
    "Smith",
    "Jones",
    "Brown",
    "Taylor",
    "Wilson",
    "Evans",
    "Walker",
    "White",
    "Green",
    "Hall",
    "Wood",
    "Clark",
]
KO_VENDOR_A = [
    "한빛",
    "누리",
    "가람",
    "다솜",
    "미르",
    "바다",
    "새벽",
    "아라",
    "은하",
    "하늘",
    "해솔",
    "나래",
]
KO_VENDOR_B = ["상사", "전자", "테크", "시스템", "물산", "유통", "정보", "산업", "무역", "솔루션"]
EN_VENDOR_A = [
    "Blue",
    "Bright",
    "Cedar",
    "Delta",
    "Eagle",
    "First",
    "Golden",
    "Harbor",
    "Iron",
    "Jade",
    "King",
    "Lunar",
]
EN_VENDOR_B = [
    "Trading",
    "Electronics",
    "Systems",
    "Supply",
    "Works",
    "Digital",
    "Partners",
    "Industries",
    "Logistics",
    "Solutions",
]
KINDS = ("id", "person", "vendor", "item_date", "paraphrase")


class Question(msgspec.Struct):
    document: str
    question: str
    kind: str
    language: str


def _unique(rng: random.Random, n: int, a: list[str], b: list[str], sep: str) -> list[str]:
    """n distinct names (numbered past the combinations there are)."""
    pairs = [(x, y) for x in a for y in b]
    rng.shuffle(pairs)
    return [
        f"{x}{sep}{y}" + (f" {k // len(pairs) + 1}" if k >= len(pairs) else "")
        for k, (x, y) in ((k, pairs[k % len(pairs)]) for k in range(n))
    ]


def write_lookalike_corpus(root: Path, n: int, language: str, seed: int = 11) -> list[Question]:
    """`n` purchase requests in `language` ("ko" or "en") under root, and their questions."""
    rng = random.Random(seed + (0 if language == "ko" else 1))
    korean = language == "ko"
    people = _unique(rng, n, *((KO_SURNAMES, KO_GIVEN, "") if korean else (EN_FIRST, EN_LAST, " ")))
    vendors = _unique(
        rng, n, *((KO_VENDOR_A, KO_VENDOR_B, "") if korean else (EN_VENDOR_A, EN_VENDOR_B, " "))
    )
    numbers: set[str] = set()
    item_dates: set[tuple[int, str]] = set()
    questions: list[Question] = []
    for i in range(n):
        code, dept = (KO_DEPTS if korean else EN_DEPTS)[rng.randrange(8)]
        while True:
            number = f"{code}-2024-{rng.randint(100, 999)}"
            if number not in numbers:
                numbers.add(number)
                break
        while True:
            item = rng.randrange(len(ITEMS))
            month, day = rng.randint(1, 12), rng.randint(1, 28)
            if (item, f"{month}-{day}") not in item_dates:
                item_dates.add((item, f"{month}-{day}"))
                break
        ko_item, ko_para, en_item, en_para = ITEMS[item]
        qty, price = rng.randint(2, 40), rng.randint(12, 480) * 10_000
        person, vendor = people[i], vendors[i]
        kind = KINDS[i % len(KINDS)]
        name = f"{'request' if not korean else 'gian'}_{language}_{i:03d}.pdf"
        if korean:
            pages = [
                [
                    "구매 요청 기안서",
                    f"문서번호: {number}",
                    f"요청 부서: {dept}",
                    f"요청자: {person} 과장",
                    f"기안일: 2024년 {month}월 {day}일",
                    f"구매 품목: {ko_item}",
                    f"구매 수량: {qty}대, 단가 {price:,}원, 합계 금액 {qty * price:,}원",
                    f"공급 업체: {vendor}",
                    "위와 같이 구매를 요청하오니 검토 후 승인하여 주시기 바랍니다.",
                ]
            ]
            question = {
                "id": f"문서번호 {number} 기안서의 구매 수량과 합계 금액은?",
                "person": f"{person} 과장이 요청한 구매 품목은 무엇인가요?",
                "vendor": f"{vendor}에서 구매하는 품목과 수량은?",
                "item_date": f"2024년 {month}월 {day}일에 기안된 {ko_item} 구매의 합계 금액은?",
                "paraphrase": f"{dept}가 {month}월 {day}일에 {ko_para}를 사겠다고 올린 "
                f"요청의 공급처는 어디인가요?",
            }[kind]
        else:
            pages = [
                [
                    "Purchase request",
                    f"Document number: {number}",
                    f"Requesting department: {dept}",
                    f"Requested by: {person}",
                    f"Date: 2024-{month:02d}-{day:02d}",
                    f"Item: {en_item}",
                    f"Quantity: {qty} units at {price:,} won each, total {qty * price:,} won",
                    f"Vendor: {vendor}",
                    "Please review and approve the purchase described above.",
                ]
            ]
            month_name = [
                "January",
                "February",
                "March",
                "April",
                "May",
                "June",
                "July",
                "August",
                "September",
                "October",
                "November",
                "December",
            ][month - 1]
            question = {
                "id": f"What quantity and total are in purchase request {number}?",
                "person": f"Which item did {person} ask to buy?",
                "vendor": f"What are we buying from {vendor}, and how many?",
                "item_date": f"What is the total of the {en_item} request dated "
                f"2024-{month:02d}-{day:02d}?",
                "paraphrase": f"Who supplies the {en_para} that the {dept} wanted on "
                f"{month_name} {day}?",
            }[kind]
        write_pdf(root / name, pages)
        questions.append(Question(name, question, kind, language))
    return questions


def first_documents(hits: list[str], k: int = 5) -> list[str]:
    """The first k distinct documents of a ranked list of chunk documents."""
    out: list[str] = []
    for doc in hits:
        if doc not in out:
            out.append(doc)
    return out[:k]


def hit_rates(search, questions: list[Question]) -> dict[str, tuple[float, float]]:
    """hit@1 and hit@5 by document, per question kind and for "all"; `search(question)`
    returns the documents of the ranked chunks."""
    counts: dict[str, list[int]] = {}
    for q in questions:
        docs = first_documents(search(q.question))
        for key in (q.kind, "all"):
            c = counts.setdefault(key, [0, 0, 0])
            c[0] += 1
            c[1] += bool(docs) and docs[0] == q.document
            c[2] += q.document in docs
    return {k: (c[1] / c[0], c[2] / c[0]) for k, c in counts.items()}
