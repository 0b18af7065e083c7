"""Incremental detokenization with stop conditions, one :class:`IncrementalDetokenizer` per choice.

Text is decoded with the prefix/read offsets of vLLM/TGI: the new text of a token is
``decode(ids[prefix:]) - decode(ids[prefix:read])``, where the window starts a few tokens back so
tokenizers that drop or merge leading spaces decode the boundary as they would the whole. A
decoded window ending in U+FFFD is an incomplete multi-byte character: nothing is emitted until a
later token completes it.

Stop strings: text that could still be the start of a stop string is held back; when a stop string
appears, the text is cut just before it (or just after it, with ``include_stop_str_in_output``) and
the choice finishes with reason ``stop``. EOS (unless ``ignore_eos``) and ``stop_token_ids`` finish
with ``stop`` and add no text; ``max_tokens`` or the context limit finish with ``length``, flushing
any held-back text.
"""

from __future__ import annotations

from typing import Any

from modelyard.engine.request import FinishReason, SamplingParams

_PREFIX_WINDOW = 5  # prompt tokens decoded as context before the first generated one


class IncrementalDetokenizer:
    """Turns one choice's generated tokens into text deltas and decides when it stops."""

    __slots__ = (
        "tokenizer",
        "params",
        "eos_token_ids",
        "ids",
        "prefix_offset",
        "read_offset",
        "text",
        "emitted",
        "finish_reason",
        "num_generated",
        "max_total_tokens",
        "_max_stop_len",
        "num_prompt",
    )

    def __init__(
        self,
        tokenizer: Any,
        prompt_token_ids: list[int],
        params: SamplingParams,
        eos_token_ids: set[int] | frozenset[int],
        max_total_tokens: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.params = params
        self.eos_token_ids = frozenset() if params.ignore_eos else frozenset(eos_token_ids)
        self.ids: list[int] = list(prompt_token_ids[-_PREFIX_WINDOW:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.text = ""  # all text decoded so far (possibly past a stop string until cut)
        self.emitted = 0  # characters of ``text`` already returned
        self.finish_reason: FinishReason | None = None
        self.num_generated = 0
        self.max_total_tokens = max_total_tokens
        self._max_stop_len = max((len(s) for s in params.stop), default=0)
        self.num_prompt = len(prompt_token_ids)

    def add(self, token_id: int) -> str:
        """Feed one generated token; return the text that may be shown now ("" if none yet)."""
        if self.finish_reason is not None:
            raise RuntimeError("token added after the choice finished")
        self.num_generated += 1
        if token_id in self.eos_token_ids or token_id in self.params.stop_token_ids:
            self.finish_reason = FinishReason.STOP
            return self._flush()
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
        if self.params.stop and self._check_stop():
            return self._flush()
        if self.num_generated >= self.params.max_tokens or (
            self.max_total_tokens is not None
            and self.num_prompt + self.num_generated >= self.max_total_tokens
        ):
            self.finish_reason = FinishReason.LENGTH
            return self._flush()
        end = len(self.text) - self._held_back()
        delta = self.text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return delta

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _check_stop(self) -> bool:
        # A new stop string can only end in the newly added text, so start just before it.
        start = max(0, self.emitted - self._max_stop_len)
        best: tuple[int, str] | None = None
        for stop in self.params.stop:
            if not stop:
                continue
            i = self.text.find(stop, start)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, stop)
        if best is None:
            return False
        i, stop = best
        self.text = self.text[: i + len(stop)] if self.params.include_stop_str_in_output else self.text[:i]
        self.finish_reason = FinishReason.STOP
        return True

    def _held_back(self) -> int:
        """Length of the longest suffix of the text that is a proper prefix of a stop string."""
        text = self.text
        held = 0
        for stop in self.params.stop:
            for k in range(min(len(stop) - 1, len(text)), held, -1):
                if text.endswith(stop[:k]):
                    held = k
                    break
        return held

    def _flush(self) -> str:
        delta = self.text[self.emitted :]
        self.emitted = len(self.text)
        return delta

    def finish(self) -> str:
        """End the choice now (abort): return any held-back text."""
        return self._flush()
