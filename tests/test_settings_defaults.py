"""Each setting's default is written once, in its Option: the structs and constructors that
carry settings take theirs from the options (ragserve.options.defaults). This guards that
none of them has a literal of its own again (`flash_attn` once defaulted to True in the
engine and to auto on the command line)."""

from __future__ import annotations

import inspect

import msgspec
import pytest

from ragserve.engine.llama_engine import LlamaEngine
from ragserve.engine.options import ENGINE_OPTIONS, UPSTREAM_OPTIONS
from ragserve.engine.scheduler import Scheduler
from ragserve.engine.upstream import UpstreamEngine
from ragserve.ingest.extract import TEXT_LIMIT_OPTIONS, TextLimits
from ragserve.ingest.ocr import OCR_OPTIONS, OcrSettings
from ragserve.ingest.pipeline import INGEST_OPTIONS, IngestOptions
from ragserve.options import Option, defaults
from ragserve.retrieval.config import RETRIEVAL_OPTIONS, RetrievalSettings
from ragserve.server.settings import SERVE_OPTIONS, Settings

# (what carries settings, its options, its field -> the option's field where they differ)
CARRIERS = [
    (Settings, SERVE_OPTIONS, {}),
    (RetrievalSettings, RETRIEVAL_OPTIONS, {}),
    (IngestOptions, INGEST_OPTIONS, {}),
    (
        OcrSettings,
        OCR_OPTIONS,
        {"lang": "ocr_lang", "dpi": "ocr_dpi", "page_timeout_s": "ocr_page_timeout_s"},
    ),
    (
        TextLimits,
        TEXT_LIMIT_OPTIONS,
        {"page_chars": "max_page_chars", "document_chars": "max_document_chars"},
    ),
    (LlamaEngine, ENGINE_OPTIONS, {}),
    (
        UpstreamEngine,
        ENGINE_OPTIONS + UPSTREAM_OPTIONS,
        {"connect_timeout": "llm_connect_timeout", "read_timeout": "llm_read_timeout"},
    ),
    (Scheduler, ENGINE_OPTIONS, {}),
]
# fields whose default is not the option's on purpose
NOT_THE_OPTION = {
    (OcrSettings, "mode"),  # off until a run has looked for Tesseract (ocr_settings)
    (IngestOptions, "ocr"),  # an OcrSettings, built from the four --ocr options
}


def field_defaults(carrier) -> dict[str, object]:
    if isinstance(carrier, type) and issubclass(carrier, msgspec.Struct):
        return {
            f.name: f.default
            for f in msgspec.structs.fields(carrier)
            if f.default is not msgspec.NODEFAULT
        }
    return {
        name: p.default
        for name, p in inspect.signature(carrier.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


@pytest.mark.parametrize(
    ("carrier", "options", "renamed"), CARRIERS, ids=lambda c: getattr(c, "__name__", "")
)
def test_every_default_is_the_options(carrier, options: tuple[Option, ...], renamed):
    declared = defaults(options)
    checked = 0
    for name, value in field_defaults(carrier).items():
        option = renamed.get(name, name)
        if option not in declared or (carrier, name) in NOT_THE_OPTION:
            continue
        assert value == declared[option], (
            f"{carrier.__name__}.{name}: {value!r} != {declared[option]!r}"
        )
        checked += 1
    assert checked, f"{carrier.__name__} shares no setting with its options"


def test_every_option_reaches_its_struct():
    """Every serve/retrieval/ingest option is a field of the struct it fills (an option
    without one would be parsed and dropped)."""
    for struct, options in ((Settings, SERVE_OPTIONS), (RetrievalSettings, RETRIEVAL_OPTIONS)):
        fields = {f.name for f in msgspec.structs.fields(struct)}
        assert {o.field for o in options} <= fields
    ingest = {f.name for f in msgspec.structs.fields(IngestOptions)}
    ocr = {o.field for o in OCR_OPTIONS}  # folded into IngestOptions.ocr
    assert {o.field for o in INGEST_OPTIONS} - ocr <= ingest


def test_the_engine_flags_default_as_the_engine_does():
    """The flags' defaults are the engine's: what `ragserve serve` runs with and what a
    program constructing LlamaEngine gets are the same."""
    engine = field_defaults(LlamaEngine)
    assert (
        engine["flash_attn"] == "auto" and engine["parallel"] == defaults(SERVE_OPTIONS)["parallel"]
    )
