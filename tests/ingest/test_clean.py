from ragserve.ingest.clean import clean_text, garbage_score, looks_garbled


def test_clean_text_normalises_ligatures_hyphens_and_whitespace():
    raw = "infor-\nmation  \ufb01nal\u00adly\r\n\n\n\nKR-\n2024\tend "
    assert clean_text(raw) == "information finally\n\nKR-\n2024 end"


def test_clean_text_composes_hangul_to_nfc():
    decomposed = "\u1100\u1161\u11a8"  # 각 as jamo
    assert clean_text(decomposed) == "각"


def test_korean_text_is_not_garbage():
    text = "계약번호 KR-2024-0173 의 계약금액은 5억원입니다. 大韓民國 헌법 제1조"
    assert not looks_garbled(text)


def test_cmap_mojibake_is_garbage():
    # What pypdf returns for Korean in a KSCms-UHC-H font without a ToUnicode map.
    mojibake = "냨뻠맸좣⁋刭㈰㈴ⴰㄷ㌠샇₰\ue8be\ue0b1\uddbeퟀ먠㖾\uefbf\uf8c0풴쾴"
    assert looks_garbled(mojibake)
    assert garbage_score(mojibake) > garbage_score("정상적인 한국어 문장입니다.")


def test_empty_text_scores_zero():
    assert garbage_score("   \n") == 0.0
