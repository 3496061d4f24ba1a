from ragserve.retrieval.analyzer import analyze, fts_query
from ragserve.retrieval.fusion import fuse, separation


def test_korean_runs_become_bigrams_and_ids_stay_whole():
    terms = analyze("계약금액은 KR-2024-0173")
    assert terms == ["계약", "약금", "금액", "액은", "kr", "2024", "0173"]


def test_query_with_particle_shares_bigrams_with_document():
    assert {"계약", "금액"} <= set(analyze("계약금액이 얼마인가요"))


def test_fts_query_quotes_terms_so_operators_are_literal():
    assert fts_query('NEAR(a b) OR "x"') == '"near" OR "a" OR "b" OR "or" OR "x"'
    assert fts_query("   ?! ") is None


def test_fusion_agrees_where_both_lists_agree():
    dense = {1: 0.80, 2: 0.60, 3: 0.79}
    keyword = {1: 9.0, 2: 3.0, 3: 8.9}
    assert [i for i, _ in fuse(dense, keyword)][:2] == [1, 3]


def test_a_flat_list_cannot_reorder_a_sharp_one():
    flat = {1: 0.460, 2: 0.458, 3: 0.457, 4: 0.455, 5: 0.451}  # a model that knows no Korean
    sharp = {1: 7.8, 2: 7.9, 3: 13.4, 4: 7.8, 5: 7.8}  # a keyword hit far above the rest
    assert separation(flat.values()) < 0.1 < separation(sharp.values())
    assert fuse(flat, sharp)[0][0] == 3
    assert separation([]) == 0.0


def test_an_identifier_match_is_decisive():
    dense = {1: 0.9, 2: 0.5}
    keyword = {1: 12.0, 2: 6.0}
    assert fuse(dense, keyword, decisive={2})[0][0] == 2
