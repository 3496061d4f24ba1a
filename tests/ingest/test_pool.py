from pathlib import Path

from helpers import hang_or_crash
from pdfgen import write_pdf

from ragserve.ingest.pool import ExtractPool


def test_pool_survives_hanging_and_dying_workers(tmp_path: Path):
    good = [write_pdf(tmp_path / f"good{i}.pdf", [[f"document {i}"]]) for i in range(3)]
    hang = write_pdf(tmp_path / "hang.pdf", [["x"]])
    crash = write_pdf(tmp_path / "crash.pdf", [["x"]])
    paths = [str(p) for p in [good[0], hang, good[1], crash, good[2]]]
    with ExtractPool(workers=2, timeout_s=3, memory_limit_mb=2048, fn=hang_or_crash) as pool:
        results = dict(pool.imap_unordered(paths))
    assert set(results) == set(paths)
    assert results[str(hang)].status == "failed" and "timed out" in results[str(hang)].reason
    assert results[str(crash)].status == "failed" and "died" in results[str(crash)].reason
    for i, p in enumerate(good):
        assert results[str(p)].status == "ok"
        assert results[str(p)].pages == [f"document {i}"]
