from ragserve.retrieval.analyzer import analyze, fts_query
from ragserve.retrieval.search import confidence, rrf


def test_korean_runs_become_bigrams_and_ids_stay_whole():
    terms = analyze("계약금액은 KR-2024-0173")
    assert terms == ["계약", "약금", "금액", "액은", "kr", "2024", "0173"]


def test_query_with_particle_shares_bigrams_with_document():
    assert {"계약", "금액"} <= set(analyze("계약금액이 얼마인가요"))


def test_fts_query_quotes_terms_so_operators_are_literal():
    assert fts_query('NEAR(a b) OR "x"') == '"near" OR "a" OR "b" OR "or" OR "x"'
    assert fts_query("   ?! ") is None


def test_rrf_rewards_agreement():
    fused = rrf([[1, 2, 3], [3, 1, 4]])
    assert [i for i, _ in fused][:2] == [1, 3]


def test_weighted_rrf_trusts_the_confident_ranker():
    flat = [0.46, 0.458, 0.457, 0.455, 0.451]  # a dense model that does not know the language
    sharp = [13.4, 7.9, 7.8, 7.8, 7.8]  # a keyword hit far above the rest
    assert confidence(flat) < 0.1 < confidence(sharp)
    fused = rrf([[1, 2, 3], [3, 4, 5]], [confidence(flat), confidence(sharp)])
    assert fused[0][0] == 3
    assert confidence([]) == 0.0
