"""The generation engine: continuous batching over llama.cpp behind a small typed contract.

submit(request) -> handle (refused at once when the queue is full) -> events; cancel;
stats; shutdown; close. The modules: `types` (the contract), `scheduler` (slots, batching,
admission), `llama` (the C binding), `chat` (templates), `grammar` (JSON schema -> GBNF,
bounded), `stops` (stop strings), `jobs` (events from the engine thread to the loop).
"""

from .chat import FALLBACK_TEMPLATE, ChatTemplate
from .grammar import schema_to_gbnf
from .jobs import Job
from .scheduler import LlamaEngine, default_gpu_layers
from .stops import StopMatcher
from .types import (
    Engine,
    EngineStats,
    Finished,
    GenerationEvent,
    GenerationRequest,
    Handle,
    SamplingParams,
    TextDelta,
)

__all__ = [
    "FALLBACK_TEMPLATE",
    "ChatTemplate",
    "Engine",
    "EngineStats",
    "Finished",
    "GenerationEvent",
    "GenerationRequest",
    "Handle",
    "Job",
    "LlamaEngine",
    "SamplingParams",
    "StopMatcher",
    "TextDelta",
    "default_gpu_layers",
    "schema_to_gbnf",
]
