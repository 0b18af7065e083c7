"""Attention over the paged KV cache.

Per step the runner calls :func:`prepare_attention` once; it splits the batch into

- one *decode group*: every sequence with ``query_len == 1``. Each layer answers all of them with ONE
  SDPA call over a padded gather of their KV blocks (gather index and padding masks built here, once).
- *prefill sequences* (``query_len > 1``; a first chunk, a later chunk, or a prompt after a cached
  prefix): one SDPA call each. A prompt with no cached prefix attends to its fresh K/V directly
  (``is_causal``) without reading the cache back.

Cache layout, per layer: K and V each ``[kv_heads, num_blocks, block_size, head_dim]`` (heads
outermost), so a gather of a sequence's blocks along dim 1 is already the ``[kv_heads, keys,
head_dim]`` matrix the matmuls read: one copy per step and layer, not a gather plus a transposing
copy (that second copy was ~12 % of a batch-32 decode step in float32).

Keys sit at cache index == absolute position, so causal and sliding-window masks compare positions:
a key at ``k`` is visible to a query at ``q`` when ``k <= q`` and, for a window ``w``, ``q - k < w``.
Masks for a window are built lazily the first time a layer with that window asks, then reused by
every other layer of the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from modelyard.engine.forward_batch import ForwardBatch


@dataclass(slots=True)
class PrefillSeq:
    """One sequence with ``query_len > 1``: tokens ``[start, end)`` of the step, ``context_len`` keys."""

    start: int
    end: int
    context_len: int
    blocks: torch.Tensor  # [n_blocks] block ids covering the context
    masks: dict[int | None, torch.Tensor | None] = field(default_factory=dict)

    @property
    def fresh(self) -> bool:
        """True when the whole context is this step's tokens (no cached prefix to read back)."""
        return self.context_len == self.end - self.start

    def mask(self, window: int | None, device: torch.device) -> torch.Tensor | None:
        """``[1, 1, q, ctx]`` bool (True = attend), or None for a plain causal fresh prefill."""
        if window not in self.masks:
            if self.fresh and (window is None or window >= self.context_len):
                self.masks[window] = None
            else:
                q_len = self.end - self.start
                q_pos = torch.arange(self.context_len - q_len, self.context_len, device=device)[:, None]
                k_pos = torch.arange(self.context_len, device=device)[None, :]
                m = k_pos <= q_pos
                if window is not None:
                    m &= (q_pos - k_pos) < window
                self.masks[window] = m[None, None]
        return self.masks[window]


@dataclass(slots=True)
class DecodeGroup:
    """All ``query_len == 1`` sequences of the step, answered by one SDPA call per layer."""

    token_index: torch.Tensor | slice  # their tokens in the step (a slice when contiguous)
    blocks: torch.Tensor  # [D, n_blocks] block ids, padded with block 0
    context_lens: torch.Tensor  # [D]
    max_len: int  # padded key length = n_blocks * block_size
    masks: dict[int | None, torch.Tensor] = field(default_factory=dict)

    def bias(self, window: int | None, n_kv: int, group: int) -> torch.Tensor:
        """``[n_kv * D, group, max_len]`` float32 additive mask (KV head major, as the gathered cache;
        materialised once per step, the ``baddbmm`` input): 0 where key index < context_len (and within
        the window), -inf elsewhere."""
        if window not in self.masks:
            k_pos = torch.arange(self.max_len, device=self.blocks.device)[None, :]
            ctx = self.context_lens[:, None]
            m = k_pos < ctx
            if window is not None:
                m &= k_pos > (ctx - 1 - window)
            bias = torch.zeros(m.shape, dtype=torch.float32, device=m.device).masked_fill_(~m, float("-inf"))
            n_seqs = bias.shape[0]
            self.masks[window] = (
                bias[None, :, None, :]
                .expand(n_kv, n_seqs, group, self.max_len)
                .reshape(-1, group, self.max_len)
            )
        return self.masks[window]


@dataclass(slots=True)
class AttentionMetadata:
    """Derived tensors of one step, shared by every attention layer."""

    decode: DecodeGroup | None
    prefills: list[PrefillSeq]
    num_tokens: int


def prepare_attention(batch: ForwardBatch) -> AttentionMetadata:
    """Fill and return ``batch.attn``; call once per step before ``model.forward``."""
    bs = batch.block_size
    ctx_list = batch.context_lens.tolist()
    dec_seqs: list[int] = []
    dec_tokens: list[int] = []
    prefills: list[PrefillSeq] = []
    start = 0
    for i, q in enumerate(batch.query_lens):
        if q == 1:
            dec_seqs.append(i)
            dec_tokens.append(start)
        elif q > 1:
            n_blocks = -(-ctx_list[i] // bs)
            prefills.append(PrefillSeq(start, start + q, ctx_list[i], batch.block_tables[i, :n_blocks]))
        start += q
    decode = None
    if dec_seqs:
        device = batch.block_tables.device
        seq_idx = torch.tensor(dec_seqs, device=device)
        ctx = batch.context_lens[seq_idx]
        n_blocks = -(-max(ctx_list[i] for i in dec_seqs) // bs)
        contiguous = dec_tokens == list(range(dec_tokens[0], dec_tokens[0] + len(dec_tokens)))
        token_index: torch.Tensor | slice = (
            slice(dec_tokens[0], dec_tokens[0] + len(dec_tokens))
            if contiguous
            else torch.tensor(dec_tokens, device=device)
        )
        decode = DecodeGroup(token_index, batch.block_tables[seq_idx, :n_blocks], ctx, n_blocks * bs)
    meta = AttentionMetadata(decode, prefills, start)
    batch.attn = meta
    return meta


def write_kv(
    k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor
) -> None:
    """Store this step's ``k``, ``v`` ``[T, kv_heads, head_dim]`` at their cache slots."""
    n_kv, d = k_cache.shape[0], k_cache.shape[-1]
    k_cache.view(n_kv, -1, d).index_copy_(1, slots, k.transpose(0, 1))
    v_cache.view(n_kv, -1, d).index_copy_(1, slots, v.transpose(0, 1))


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kv_cache: tuple[torch.Tensor, torch.Tensor],
    batch: ForwardBatch,
    *,
    scale: float,
    window: int | None = None,
) -> torch.Tensor:
    """Attention output ``[T, heads * head_dim]`` for ``q`` ``[T, heads, d]``, ``k``/``v`` ``[T, kv_heads, d]``.

    Writes ``k``/``v`` into ``kv_cache`` at ``batch.slot_mapping`` first, so decodes and later chunks see them.
    """
    meta: AttentionMetadata = batch.attn
    k_cache, v_cache = kv_cache
    write_kv(k_cache, v_cache, k, v, batch.slot_mapping)
    n_tokens, n_heads, head_dim = q.shape
    dec = meta.decode
    if dec is not None and not meta.prefills:  # a pure decode step: no output buffer to scatter into
        return _decode_attention(q, k_cache, v_cache, dec, scale, window).view(n_tokens, n_heads * head_dim)
    out = q.new_empty(n_tokens, n_heads, head_dim)
    gqa = n_heads != k.shape[1]
    for seq in meta.prefills:
        qs = q[seq.start : seq.end].transpose(0, 1)[None]
        if seq.fresh:
            ks, vs = k[seq.start : seq.end].transpose(0, 1), v[seq.start : seq.end].transpose(0, 1)
        else:  # [kv, ctx, d] straight from the head-major cache
            ks = k_cache.index_select(1, seq.blocks).flatten(1, 2)[:, : seq.context_len]
            vs = v_cache.index_select(1, seq.blocks).flatten(1, 2)[:, : seq.context_len]
        mask = seq.mask(window, q.device)
        o = F.scaled_dot_product_attention(
            qs,
            ks[None],
            vs[None],
            attn_mask=mask,
            is_causal=mask is None,
            scale=scale,
            enable_gqa=gqa,
        )
        if len(meta.prefills) == 1 and dec is None and seq.end - seq.start == n_tokens:
            return o[0].transpose(0, 1).reshape(n_tokens, n_heads * head_dim)
        out[seq.start : seq.end] = o[0].transpose(0, 1)
    if dec is not None:
        out[dec.token_index] = _decode_attention(q[dec.token_index], k_cache, v_cache, dec, scale, window)
    return out.view(n_tokens, n_heads * head_dim)


def _decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    dec: DecodeGroup,
    scale: float,
    window: int | None,
) -> torch.Tensor:
    """One query per sequence ``q [D, heads, d]`` over its padded KV blocks -> ``[D, heads, d]``.

    Two batched matmuls instead of SDPA: CPU SDPA kernels are tuned for long queries and were ~10x
    slower here for single-token queries (bf16). Query heads are grouped by their KV head (GQA) so
    K/V are never repeated; rows are ``(kv head, sequence)``, the order of the head-major cache, so
    the gather is the matmul operand as is (only the small ``q`` and output are permuted). The scale
    and the padding mask ride on one ``baddbmm``. In bf16 both matmuls read the bf16 K/V directly
    (oneDNN accumulates in float32) and only the scores and the softmax run in float32, as Hugging
    Face's eager bf16 attention does.
    """
    n_seqs, n_heads, head_dim = q.shape
    n_kv = k_cache.shape[0]
    group = n_heads // n_kv
    flat = dec.blocks.flatten()
    rows = n_kv * n_seqs
    bias = dec.bias(window, n_kv, group)  # [kv * D, group, L]
    k = k_cache.index_select(1, flat).view(rows, dec.max_len, head_dim)
    v = v_cache.index_select(1, flat).view(rows, dec.max_len, head_dim)
    qh = q.view(n_seqs, n_kv, group, head_dim).transpose(0, 1).reshape(rows, group, head_dim)
    if q.dtype == torch.float32:
        probs = torch.softmax(torch.baddbmm(bias, qh, k.transpose(1, 2), alpha=scale), dim=-1)
    else:
        scores = torch.bmm(qh, k.transpose(1, 2)).float()
        probs = torch.softmax(torch.add(bias, scores, alpha=scale), dim=-1).to(q.dtype)
    o = torch.bmm(probs, v)  # [kv * D, group, d]
    return o.view(n_kv, n_seqs, group, head_dim).transpose(0, 1).reshape(n_seqs, n_heads, head_dim)
