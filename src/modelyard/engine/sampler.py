"""Batched sampling over ``[R, vocab]`` logits with per-row parameters.

Order of processing (each step skipped when no row needs it):
1. penalties: repetition (over prompt and generated tokens, as HF/vLLM: positive logits divided,
   negative multiplied), then frequency (x count) and presence (x seen) over generated tokens;
2. greedy rows (``temperature == 0``) take the argmax here;
3. temperature, then top-k, top-p (smallest set with mass >= p, at least one token), then min-p
   (drop tokens with prob < min_p x the top prob);
4. sampling by exponential race: ``argmax(probs / E)`` with ``E ~ Exp(1)`` i.i.d. per token, which
   draws exactly from ``probs``. A seeded request draws ``E`` from its own ``torch.Generator`` (one
   vocab-sized draw per sampled token), so its samples do not depend on the rest of the batch.

Logprobs are those of the **raw model distribution** (log-softmax of the unprocessed logits, before
penalties, temperature and truncation), as vLLM's default ``raw_logprobs``: they mean the same thing
whatever the sampling parameters, and the chosen token's logprob is finite even under top-k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modelyard.engine.request import SamplingParams
from modelyard.engine.sequence import Sequence


@dataclass(slots=True)
class SamplerOutput:
    """Per row: the sampled token, its logprob (``None`` unless asked) and the top alternatives."""

    token_ids: list[int]
    logprobs: list[float | None]
    top_logprobs: list[list[tuple[int, float]] | None]


def make_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The generator of choice ``index`` of a seeded request (choice 0 uses ``seed`` itself)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed if index == 0 else hash((seed, index)) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def _padded(rows: list[list[int]], pad: int, device: torch.device) -> torch.Tensor:
    width = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.int64, device=device)


def _plain_greedy(p: SamplingParams) -> bool:
    return (
        p.temperature <= 0.0
        and p.repetition_penalty == 1.0
        and not p.presence_penalty
        and not p.frequency_penalty
    )


class Sampler:
    """Turns logits into tokens; holds the engine-wide generator used by unseeded rows."""

    def __init__(self, device: torch.device, seed: int | None = None) -> None:
        self.device = device
        self.generator = torch.Generator(device=device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor, seqs: list[Sequence]) -> SamplerOutput:
        """Sample one token for each row; ``seqs[i]`` supplies row ``i``'s parameters and history."""
        rows, vocab = logits.shape
        params = [s.params for s in seqs]
        want_lp = [p.logprobs is not None for p in params]
        if not any(want_lp) and all(_plain_greedy(p) for p in params):
            # Fast path (the common all-greedy batch): one argmax, no copy, no penalty or sort work.
            token_list = logits.argmax(dim=-1).tolist()
            return SamplerOutput(token_list, [None] * rows, [None] * rows)
        raw = torch.log_softmax(logits.float(), dim=-1) if any(want_lp) else None
        logits = logits.float().clone()
        if any(p.repetition_penalty != 1.0 or p.presence_penalty or p.frequency_penalty for p in params):
            self._penalize(logits, seqs, vocab)
        greedy = [p.temperature <= 0.0 for p in params]
        if all(greedy):
            tokens = logits.argmax(dim=-1)
        else:
            tokens = self._sample(logits, seqs, greedy, vocab)
        token_list = tokens.tolist()
        lps: list[float | None] = [None] * rows
        tops: list[list[tuple[int, float]] | None] = [None] * rows
        if raw is not None:
            chosen = raw.gather(1, tokens.view(-1, 1)).view(-1).tolist()
            k = max(p.logprobs or 0 for p in params)
            top_v, top_i = raw.topk(k, dim=-1) if k > 0 else (None, None)
            tv = top_v.tolist() if top_v is not None else None
            ti = top_i.tolist() if top_i is not None else None
            for r, p in enumerate(params):
                if p.logprobs is None:
                    continue
                lps[r] = chosen[r]
                kr = p.logprobs
                tops[r] = list(zip(ti[r][:kr], tv[r][:kr], strict=True)) if kr and ti and tv else []
        return SamplerOutput(token_list, lps, tops)

    def _penalize(self, logits: torch.Tensor, seqs: list[Sequence], vocab: int) -> None:
        dev = logits.device
        params = [s.params for s in seqs]
        outputs = _padded([s.output_token_ids for s in seqs], vocab, dev)
        counts = torch.zeros(len(seqs), vocab + 1, device=dev)
        counts.scatter_add_(1, outputs, torch.ones_like(outputs, dtype=counts.dtype))
        counts = counts[:, :vocab]
        rep = torch.tensor([p.repetition_penalty for p in params], device=dev).unsqueeze(1)
        if bool((rep != 1.0).any()):
            prompts = _padded([s.token_ids[: s.num_prompt_tokens] for s in seqs], vocab, dev)
            seen = torch.zeros(len(seqs), vocab + 1, dtype=torch.bool, device=dev)
            seen.scatter_(1, prompts, True)
            seen = seen[:, :vocab] | (counts > 0)
            penalized = torch.where(logits > 0, logits / rep, logits * rep)
            logits.copy_(torch.where(seen, penalized, logits))
        freq = torch.tensor([p.frequency_penalty for p in params], device=dev).unsqueeze(1)
        pres = torch.tensor([p.presence_penalty for p in params], device=dev).unsqueeze(1)
        logits.sub_(freq * counts + pres * (counts > 0).to(logits.dtype))

    def _sample(
        self, logits: torch.Tensor, seqs: list[Sequence], greedy: list[bool], vocab: int
    ) -> torch.Tensor:
        dev = logits.device
        params = [s.params for s in seqs]
        greedy_t = torch.tensor(greedy, device=dev)
        argmax = logits.argmax(dim=-1)
        temps = torch.tensor([p.temperature if p.temperature > 0 else 1.0 for p in params], device=dev)
        logits.div_(temps.unsqueeze(1))
        if any(p.top_k > 0 or p.top_p < 1.0 for p in params):
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            top_k = torch.tensor([p.top_k if p.top_k > 0 else vocab for p in params], device=dev)
            ranks = torch.arange(vocab, device=dev).unsqueeze(0)
            sorted_logits.masked_fill_(ranks >= top_k.unsqueeze(1), float("-inf"))
            top_p = torch.tensor([p.top_p for p in params], device=dev).unsqueeze(1)
            sorted_probs = sorted_logits.softmax(dim=-1)
            # Drop a token when the mass before it already reaches p (the top token always stays).
            sorted_logits.masked_fill_(sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p, float("-inf"))
            logits = torch.empty_like(logits).scatter_(1, order, sorted_logits)
        probs = logits.softmax(dim=-1)
        if any(p.min_p > 0.0 for p in params):
            min_p = torch.tensor([p.min_p for p in params], device=dev).unsqueeze(1)
            probs = probs.masked_fill(probs < min_p * probs.amax(dim=-1, keepdim=True), 0.0)
        noise = torch.empty_like(probs)
        noise.exponential_(generator=self.generator)
        for r, seq in enumerate(seqs):
            if seq.generator is not None and not greedy[r]:
                noise[r].exponential_(generator=seq.generator)
        sampled = (probs / noise).argmax(dim=-1)
        return torch.where(greedy_t, argmax, sampled)
