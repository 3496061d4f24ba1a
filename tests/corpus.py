"""A generated corpus of look-alike documents: same template, different facts."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
from pdfgen import write_pdf

CITIES = [
    "Seoul",
    "Busan",
    "Incheon",
    "Daegu",
    "Daejeon",
    "Gwangju",
    "Ulsan",
    "Suwon",
    "Changwon",
    "Jeonju",
    "Cheongju",
    "Pohang",
]
KO_CITIES = [
    "서울",
    "부산",
    "인천",
    "대구",
    "대전",
    "광주",
    "울산",
    "수원",
    "창원",
    "전주",
    "청주",
    "포항",
]
SURNAMES = ["Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim"]
KO_SURNAMES = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임"]
GIVEN = [
    "Minsu",
    "Jiwon",
    "Seoyeon",
    "Hyunwoo",
    "Jiho",
    "Sujin",
    "Dohyun",
    "Yuna",
    "Junseo",
    "Haeun",
    "Taeyang",
    "Eunji",
]
KO_GIVEN = [
    "민수",
    "지원",
    "서연",
    "현우",
    "지호",
    "수진",
    "도현",
    "유나",
    "준서",
    "하은",
    "태양",
    "은지",
]
PROJECTS = [
    "Falcon",
    "Orchid",
    "Granite",
    "Harbor",
    "Comet",
    "Maple",
    "Summit",
    "Aurora",
    "Beacon",
    "Cedar",
    "Delta",
    "Ember",
    "Fjord",
    "Glacier",
    "Horizon",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lotus",
    "Meadow",
    "Nebula",
    "Onyx",
    "Prairie",
    "Quartz",
]
KO_PROJECTS = [
    "한빛",
    "누리",
    "가람",
    "다솜",
    "미르",
    "바다",
    "새벽",
    "아라",
    "온누리",
    "은하",
    "자람",
    "초롱",
    "하늘",
    "해솔",
    "나래",
    "별빛",
    "보람",
    "슬기",
    "여울",
    "푸름",
    "햇살",
    "한울",
    "이음",
    "모람",
]


class Fact(msgspec.Struct):
    document: str
    question: str
    answer: str
    language: str


def write_fact_corpus(root: Path, n: int, seed: int = 7) -> list[Fact]:
    rng = random.Random(seed)
    facts: list[Fact] = []
    for i in range(n):
        korean = i % 2 == 1
        number = f"KR-{2020 + i % 5}-{rng.randint(1000, 9999)}"
        amount = rng.randint(11, 989) * 10
        if korean:
            name = KO_PROJECTS[i // 2 % len(KO_PROJECTS)]
            person = KO_SURNAMES[i % 10] + KO_GIVEN[(i * 7) % 12]
            city = KO_CITIES[(i * 5) % 12]
            doc = f"contract_{i:03d}.pdf"
            pages = [
                [
                    f"{name} 사업 계약서",
                    f"계약번호: {number}",
                    "본 문서는 공공 기반시설 사업의 계약 내용을 정리한 것이다.",
                    "계약 당사자는 성실하게 의무를 이행하여야 한다. " * 3,
                ],
                [
                    f"사업 책임자는 {person} 부장이며, 사업 장소는 {city}이다.",
                    f"{name} 사업의 총 계약금액은 {amount}억원으로 정한다.",
                    "지급은 분기별로 나누어 진행한다. " * 3,
                ],
            ]
            question = (
                f"{name} 사업의 계약금액은 얼마인가요?"
                if i % 4 == 1
                else f"계약번호 {number} 사업의 책임자는 누구인가요?"
            )
            answer = f"{amount}억원" if i % 4 == 1 else person
        else:
            name = PROJECTS[i // 2 % len(PROJECTS)]
            person = f"{GIVEN[(i * 7) % 12]} {SURNAMES[i % 10]}"
            city = CITIES[(i * 5) % 12]
            doc = f"report_{i:03d}.pdf"
            pages = [
                [
                    f"Project {name} annual report",
                    f"Document number: {number}",
                    "This report summarises the progress of an infrastructure project. " * 2,
                ],
                [
                    f"The project manager is {person}, based in {city}.",
                    f"The total budget of Project {name} is {amount} million won.",
                    "Payments are made quarterly after inspection. " * 2,
                ],
            ]
            question = (
                f"What is the budget of Project {name}?"
                if i % 4 == 0
                else f"Who manages the project with document number {number}?"
            )
            answer = f"{amount} million" if i % 4 == 0 else person
        write_pdf(root / doc, pages)
        facts.append(Fact(doc, question, answer, "ko" if korean else "en"))
    return facts
