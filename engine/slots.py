"""A slot is one sequence of the batch; an entry is what a slot put into one step's batch."""

from __future__ import annotations

import codecs

from .jobs import Job
from .stops import StopMatcher
from .types import TokenSampler


class Slot:
    """One sequence of the context: what its KV cache holds, and the request using it."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.cached: list[int] = []  # the tokens in this sequence's KV cache, in order
        self.used_at = 0.0
        self.job: Job | None = None

    def start(self, job: Job, reuse: int, sampler: TokenSampler, limit: int) -> None:
        self.job = job
        self.sampler = sampler
        self.pending = job.request.prompt_tokens[reuse:]  # prompt still to be read
        self.reused = reuse
        self.limit = limit
        self.next_token: int | None = None  # sampled, to be fed at the next step
        self.index = -1  # batch position whose logits this slot samples from
        self.generated = 0
        self.first_at: float | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = StopMatcher(job.request.params.stop)


class Entry:
    """What one slot put into this step's batch, so the step can be undone for it alone."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.start = len(slot.cached)
        self.next_token = slot.next_token
        self.pending = slot.pending
        self.tokens: list[tuple[int, bool]] = []  # (token, wants logits)
