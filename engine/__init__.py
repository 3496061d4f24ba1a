"""The generation engine: continuous batching over llama.cpp behind a small typed contract.

submit(request) -> handle (refused at once when the queue is full) -> events; cancel;
stats; shutdown; close. The modules: `types` (the contracts: Engine for the server, Backend
for the scheduler), `scheduler` (slots, batching, admission, any Backend), `llama_engine`
(llama.cpp as Backend, tokens and templates), `llama` (the C binding), `chat` (templates),
`grammar` (JSON schema -> GBNF, bounded), `stops` (stop strings), `jobs` (events from the
engine thread to the event loop), `tools` (tool calls parsed from streamed text) and
`tool_formats` (each model family's call syntax, ids and grammars); `upstream` is the
second Engine: generation through an OpenAI-compatible server (vLLM, llama-server).
"""

from .chat import FALLBACK_TEMPLATE, ChatTemplate
from .grammar import schema_to_gbnf
from .jobs import Job
from .llama_engine import EngineLoad, LlamaBackend, LlamaEngine, default_gpu_layers
from .scheduler import Scheduler
from .stops import StopMatcher
from .tool_formats import ToolFormat
from .tools import CallArguments, CallStart, Text, ToolCallParser
from .types import (
    Backend,
    BackendError,
    Engine,
    EngineStats,
    Finished,
    GenerationEvent,
    GenerationRequest,
    Handle,
    SamplingParams,
    TextDelta,
    TokenSampler,
    ToolCallsDelta,
    Trigger,
    UpstreamCall,
)
from .upstream import UpstreamEngine

__all__ = [
    "FALLBACK_TEMPLATE",
    "Backend",
    "BackendError",
    "CallArguments",
    "CallStart",
    "ChatTemplate",
    "Engine",
    "EngineLoad",
    "EngineStats",
    "Finished",
    "GenerationEvent",
    "GenerationRequest",
    "Handle",
    "Job",
    "LlamaBackend",
    "LlamaEngine",
    "SamplingParams",
    "Scheduler",
    "StopMatcher",
    "Text",
    "TextDelta",
    "TokenSampler",
    "ToolCallParser",
    "ToolCallsDelta",
    "ToolFormat",
    "Trigger",
    "UpstreamCall",
    "UpstreamEngine",
    "default_gpu_layers",
    "schema_to_gbnf",
]
