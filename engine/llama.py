"""A thin, owned layer over llama-cpp-python's C API: model, context, batch, samplers.

The high-level `llama_cpp.Llama` drives one sequence at a time and copies logits into
Python for sampling. The batching engine needs one context holding many sequences, one
`llama_decode` per step for all of them, and sampling in C; this module is that much of
the C API and nothing more. Every pointer it hands out is freed by `close()`.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import structlog

from .types import BackendError, GrammarDeadEnd

if TYPE_CHECKING:
    from .types import SamplingParams

log = structlog.get_logger(__name__)
ALL_LAYERS = 0x7FFFFFFF  # llama.cpp's "offload every layer"
PENALTY_LAST_N = 64


def _lib():
    import llama_cpp

    return llama_cpp


def _set(params: ctypes.Structure, **values: object) -> None:
    """Set fields of a llama.cpp parameter struct, refusing names the binding lacks: ctypes
    would otherwise keep a misspelt or renamed field as a plain attribute, silently ignored
    (`use_mmap` became `load_mode` in llama.cpp, and `--mmap off` did nothing)."""
    names = {field[0] for field in type(params)._fields_}
    for name, value in values.items():
        if name not in names:
            raise BackendError(
                f"this llama-cpp-python has no {type(params).__name__}.{name}; "
                "ragserve needs the version pinned in pyproject.toml"
            )
        setattr(params, name, value)


def load_mode(mmap: str) -> int:
    """llama.cpp's load mode for `--mmap`: auto (map the file unless a device cannot),
    on (map it), off (read it into memory)."""
    lib = _lib()
    modes = {
        "auto": lib.LLAMA_LOAD_MODE_AUTO,
        "on": lib.LLAMA_LOAD_MODE_MMAP,
        "off": lib.LLAMA_LOAD_MODE_NONE,
    }
    if mmap not in modes:
        raise ValueError(f"mmap must be one of {', '.join(modes)}, not {mmap!r}")
    return int(modes[mmap])


class Model:
    """A loaded GGUF: weights, vocabulary, metadata and tokenization (thread-safe)."""

    def __init__(
        self, path: Path, *, n_gpu_layers: int, mmap: str = "auto", vocab_only: bool = False
    ) -> None:
        lib = _lib()
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's chatter
        lib.llama_backend_init()
        params = lib.llama_model_default_params()
        _set(
            params,
            n_gpu_layers=ALL_LAYERS if n_gpu_layers < 0 else n_gpu_layers,
            load_mode=load_mode(mmap),
            vocab_only=vocab_only,  # a tokenizer only (an upstream engine's token budgets)
        )
        ptr = lib.llama_model_load_from_file(str(path).encode(), params)
        if not ptr:
            raise BackendError(f"llama.cpp could not load the model file {path}")
        self.ptr = ptr
        self.vocab = lib.llama_model_get_vocab(ptr)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.n_layer = lib.llama_model_n_layer(ptr)
        self.metadata = self._metadata()
        self._pieces: dict[int, bytes] = {}

    @property
    def n_ctx_train(self) -> int | None:
        """The context the model was trained for (its GGUF metadata), if it says."""
        arch = self.metadata.get("general.architecture", "")
        try:
            return int(self.metadata[f"{arch}.context_length"]) or None
        except (KeyError, ValueError):
            return None

    def _metadata(self) -> dict[str, str]:
        lib, out = _lib(), {}
        size = 1024
        buf = ctypes.create_string_buffer(size)
        for i in range(lib.llama_model_meta_count(self.ptr)):
            values = []
            for fn in (lib.llama_model_meta_key_by_index, lib.llama_model_meta_val_str_by_index):
                n = fn(self.ptr, i, buf, size)
                if n >= size:
                    size = n + 1
                    buf = ctypes.create_string_buffer(size)
                    n = fn(self.ptr, i, buf, size)
                values.append(buf.value.decode("utf-8", errors="replace"))
            out[values[0]] = values[1]
        return out

    def tokenize(self, text: str, *, add_bos: bool, special: bool = True) -> list[int]:
        lib = _lib()
        data = text.encode("utf-8")
        room = len(data) + 8  # never more tokens than bytes, plus BOS/EOS
        buf = (lib.llama_token * room)()
        n = lib.llama_tokenize(self.vocab, data, len(data), buf, room, add_bos, special)
        if n < 0:  # cannot happen with room >= bytes, but the API says so
            buf = (lib.llama_token * -n)()
            n = lib.llama_tokenize(self.vocab, data, len(data), buf, -n, add_bos, special)
        return buf[:n]

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (cached; tokens need not be whole UTF-8 characters)."""
        key = token if not special else -token - 1
        piece = self._pieces.get(key)
        if piece is None:
            lib = _lib()
            buf = ctypes.create_string_buffer(64)
            n = lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            piece = self._pieces[key] = buf.raw[:n]
        return piece

    def special_texts(self) -> tuple[str, ...]:
        """The text of every control or user-defined token (chat markup like <|im_start|>)."""
        lib = _lib()
        mask = lib.LLAMA_TOKEN_ATTR_CONTROL | lib.LLAMA_TOKEN_ATTR_USER_DEFINED
        texts = set()
        for token in range(self.n_vocab):
            if lib.llama_vocab_get_attr(self.vocab, token) & mask:
                text = self.piece(token, special=True).decode("utf-8", errors="replace")
                if len(text) > 1 and not text.isspace():
                    texts.add(text)
        return tuple(sorted(texts, key=len, reverse=True))

    def is_eog(self, token: int) -> bool:
        return bool(_lib().llama_vocab_is_eog(self.vocab, token))

    @property
    def bos(self) -> int:
        return _lib().llama_vocab_bos(self.vocab)

    @property
    def eos(self) -> int:
        return _lib().llama_vocab_eos(self.vocab)

    def close(self) -> None:
        if self.ptr:
            _lib().llama_model_free(self.ptr)
            self.ptr = None


# KV cache element types (ggml_type ids). Per token, Qwen2.5-7B keeps 28 layers x 2 x 512
# values: 56 KiB in f16, 30 KiB in q8_0, 16 KiB in q4_0. Quantized caches need flash attention.
KV_CACHE_TYPES = {"f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2}
FLASH_ATTN = ("auto", "on", "off")


def kv_cache_type(name: str) -> int:
    try:
        return KV_CACHE_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown KV cache type {name!r}") from None


def flash_attn_type(mode: bool | str) -> int:
    """llama.cpp's flash-attention switch: on, off, or auto (on where the backend has it)."""
    lib = _lib()
    if mode is True or mode == "on":
        return int(lib.LLAMA_FLASH_ATTN_TYPE_ENABLED)
    if mode is False or mode == "off":
        return int(lib.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    if mode == "auto":
        return int(lib.LLAMA_FLASH_ATTN_TYPE_AUTO)
    raise ValueError(f"flash attention must be one of {', '.join(FLASH_ATTN)}, not {mode!r}")


class Context:
    """One llama.cpp context with `n_seq` independent sequences of `n_ctx` cells each."""

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int,
        n_seq: int,
        n_batch: int,
        n_threads: int,
        flash_attn: bool | str,
        kv_type: str = "f16",
    ) -> None:
        lib = _lib()
        params = lib.llama_context_default_params()
        kv = kv_cache_type(kv_type)
        _set(
            params,
            n_ctx=n_ctx * n_seq,
            n_seq_max=n_seq,
            kv_unified=False,  # each sequence owns n_ctx cells: no request starves another
            n_batch=n_batch,
            n_ubatch=min(n_batch, 512),
            n_threads=n_threads,
            n_threads_batch=n_threads,
            flash_attn_type=flash_attn_type(flash_attn),
            type_k=kv,
            type_v=kv,
            no_perf=True,
        )
        ptr = lib.llama_init_from_model(model.ptr, params)
        if not ptr:
            raise BackendError(
                f"llama.cpp could not create a context of {n_seq} x {n_ctx} tokens with a "
                f"{kv_type} KV cache (out of memory? lower --n-ctx or --parallel, or a smaller "
                "--kv-cache-type; a quantized cache needs flash attention)"
            )
        self.ptr = ptr
        self.model = model
        self.n_seq = n_seq
        self.n_ctx = lib.llama_n_ctx_seq(ptr)
        self.n_batch = n_batch
        self._memory = lib.llama_get_memory(ptr)
        self._batch = lib.llama_batch_init(n_batch, 0, 1)
        self.n_tokens = 0

    # -- the batch ----------------------------------------------------------------------
    def clear_batch(self) -> None:
        self.n_tokens = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Queue one token for the next decode; returns its index in the batch."""
        b, i = self._batch, self.n_tokens
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits
        self.n_tokens = i + 1
        return i

    @property
    def room(self) -> int:
        return self.n_batch - self.n_tokens

    def decode(self) -> None:
        b = self._batch
        b.n_tokens = self.n_tokens
        rc = _lib().llama_decode(self.ptr, b)
        if rc != 0:
            raise BackendError(f"llama_decode failed with code {rc}")

    # -- the KV cache -----------------------------------------------------------------
    def truncate(self, seq: int, keep: int) -> bool:
        """Drop a sequence's cells from position `keep` on; False if that is impossible."""
        return bool(_lib().llama_memory_seq_rm(self._memory, seq, keep, -1))

    def close(self) -> None:
        lib = _lib()
        if self.ptr:
            lib.llama_batch_free(self._batch)
            lib.llama_free(self.ptr)
            self.ptr = None


class Grammar:
    """A compiled, pristine grammar sampler; requests sample with clones of it."""

    def __init__(self, model: Model, gbnf: str) -> None:
        lib = _lib()
        self.ptr = lib.llama_sampler_init_grammar(model.vocab, gbnf.encode(), b"root")
        if not self.ptr:
            raise BackendError("llama.cpp rejected the grammar")

    def clone(self) -> Grammar:
        copy = Grammar.__new__(Grammar)
        copy.ptr = _lib().llama_sampler_clone(self.ptr)
        return copy

    def close(self) -> None:
        if self.ptr:
            _lib().llama_sampler_free(self.ptr)
            self.ptr = None


class Candidates:
    """A reusable llama_token_data_array over the whole vocabulary (one per worker)."""

    def __init__(self, model: Model) -> None:
        import numpy as np

        lib = _lib()
        n = model.n_vocab
        self.n_vocab = n
        self._data = (lib.llama_token_data * n)()
        dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self._view = np.frombuffer(self._data, dtype=dtype)
        self._view["id"] = np.arange(n, dtype=np.int32)
        self.array = lib.llama_token_data_array(self._data, n, -1, False)
        # Tokens whose bytes contain NUL: llama.cpp's grammar code reads pieces as C
        # strings, so they pass its check and then abort the process when accepted.
        self._banned = np.array(
            [t for t in range(n) if b"\0" in model.piece(t, special=True)], dtype=np.int64
        )

    def load(self, ctx: Context, index: int) -> None:
        import numpy as np

        logits = _lib().llama_get_logits_ith(ctx.ptr, index)
        self._view["logit"] = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        self._view["logit"][self._banned] = -np.inf
        self.array.data = self._data
        self.array.size = self.n_vocab
        self.array.selected = -1
        self.array.sorted = False

    def any_allowed(self) -> bool:
        import numpy as np

        return bool(np.isfinite(self._view["logit"][: self.array.size]).any())

    def selected(self) -> tuple[int, float]:
        item = self.array.data[self.array.selected]
        return int(item.id), float(item.logit)


class Sampler:
    """A llama.cpp sampler chain for one request; sampling reads the logits in C.

    With a grammar, the grammar is applied on its own first and a token is accepted into
    it only if the grammar allowed it: accepting a token it rejects aborts the process.
    """

    def __init__(self, model: Model, p: SamplingParams, seed: int, grammar: Grammar | None):
        lib = _lib()
        self.model = model
        self.grammar = grammar
        self.triggers = [(t.text.encode(), t.at_start) for t in p.grammar_triggers]
        self.active = not self.triggers  # a lazy grammar waits for its trigger
        self._seen = b""  # generated bytes while waiting (bounded)
        self._text_started = False  # non-space text came before any start trigger
        self.ptr = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = lambda s: lib.llama_sampler_chain_add(self.ptr, s)  # noqa: E731
        if p.logit_bias:
            biases = (lib.llama_logit_bias * len(p.logit_bias))()
            for i, (token, bias) in enumerate(p.logit_bias):
                biases[i].token = token
                biases[i].bias = float("-inf") if bias <= -100 else bias
            add(lib.llama_sampler_init_logit_bias(model.n_vocab, len(p.logit_bias), biases))
        if p.repeat_penalty != 1.0 or p.frequency_penalty or p.presence_penalty:
            add(
                lib.llama_sampler_init_penalties(
                    model.n_vocab,
                    PENALTY_LAST_N,
                    p.repeat_penalty,
                    p.frequency_penalty,
                    p.presence_penalty,
                )
            )
        # Plain greedy decoding is an argmax over the logits row: done in NumPy, it skips
        # llama.cpp building and scanning a candidate array of the whole vocabulary (152k
        # entries for Qwen) per token. llama.cpp's greedy also keeps the first maximum.
        self._argmax_of = (
            model.n_vocab
            if p.temperature <= 0
            and grammar is None
            and not p.logit_bias
            and p.repeat_penalty == 1.0
            and not p.frequency_penalty
            and not p.presence_penalty
            else 0
        )
        if p.temperature <= 0:
            add(lib.llama_sampler_init_greedy())
            return
        if p.top_k > 0:
            add(lib.llama_sampler_init_top_k(p.top_k))
        if p.top_p < 1.0:
            add(lib.llama_sampler_init_top_p(p.top_p, 1))
        if p.min_p > 0:
            add(lib.llama_sampler_init_min_p(p.min_p, 1))
        add(lib.llama_sampler_init_temp(p.temperature))
        add(lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    @property
    def constrained(self) -> bool:
        return self.grammar is not None and self.active

    def sample(self, ctx: Context, index: int, candidates: Candidates | None) -> int:
        """Sample from the logits of batch position `index` (and accept the token)."""
        lib = _lib()
        if self._argmax_of:
            row = lib.llama_get_logits_ith(ctx.ptr, index)
            return int(np.ctypeslib.as_array(row, shape=(self._argmax_of,)).argmax())
        grammar = self.grammar
        if grammar is None or not self.active or candidates is None:
            token = lib.llama_sampler_sample(self.ptr, ctx.ptr, index)
            if grammar is not None and not self.active:
                self._watch(token)
            return token
        candidates.load(ctx, index)
        ref = ctypes.byref(candidates.array)
        lib.llama_sampler_apply(grammar.ptr, ref)
        if not candidates.any_allowed():
            raise GrammarDeadEnd("no token of this model can continue the required format")
        lib.llama_sampler_apply(self.ptr, ref)
        token, logit = candidates.selected()
        if logit == float("-inf"):
            raise GrammarDeadEnd("no token of this model can continue the required format")
        if not self.model.is_eog(token):
            lib.llama_sampler_accept(grammar.ptr, token)
        lib.llama_sampler_accept(self.ptr, token)
        return token

    def _watch(self, token: int) -> None:
        """Look for a trigger in the text generated so far; from it on, the grammar rules."""
        if self.active or self.model.is_eog(token):
            return
        self._seen += self.model.piece(token, special=True)
        head = self._seen.lstrip()
        for trigger, at_start in self.triggers:
            if at_start:
                if not self._text_started and head.startswith(trigger):
                    return self._activate(head)
                continue
            found = self._seen.find(trigger)
            if found >= 0:
                return self._activate(self._seen[found:])
        starts = [t for t, at_start in self.triggers if at_start]
        if head and not any(t.startswith(head[: len(t)]) for t in starts):
            self._text_started = True
        longest = max(len(t) for t, _ in self.triggers)
        if self._text_started and len(self._seen) > longest:
            self._seen = self._seen[-longest:]

    def _activate(self, text: bytes) -> None:
        """Feed the grammar the text from the trigger on; if it does not fit, stay free."""
        self.active = True
        try:
            tokens = self.model.tokenize(text.decode("utf-8"), add_bos=False, special=True)
        except UnicodeDecodeError:
            tokens = None
        if tokens is None or not all(map(self._accept_one, tokens)):
            log.warning("grammar.trigger_mismatch", text=text[:64].decode(errors="replace"))
            assert self.grammar is not None
            self.grammar.close()
            self.grammar = None

    def _accept_one(self, token: int) -> bool:
        """Accept `token` into the grammar if the grammar allows it (else False)."""
        lib = _lib()
        assert self.grammar is not None
        one = (lib.llama_token_data * 1)()
        one[0].id, one[0].logit, one[0].p = token, 0.0, 0.0
        array = lib.llama_token_data_array(one, 1, -1, False)
        lib.llama_sampler_apply(self.grammar.ptr, ctypes.byref(array))
        if one[0].logit == float("-inf"):
            return False
        lib.llama_sampler_accept(self.grammar.ptr, token)
        return True

    def close(self) -> None:
        lib = _lib()
        if self.ptr:
            lib.llama_sampler_free(self.ptr)
            self.ptr = None
        if self.grammar is not None:
            self.grammar.close()
            self.grammar = None
