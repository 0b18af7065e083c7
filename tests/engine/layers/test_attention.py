"""Paged attention against a naive per-sequence reference, for every batch shape the runner builds."""

from __future__ import annotations

import pytest
import torch

from modelyard.engine.forward_batch import ForwardBatch
from modelyard.engine.layers.attention import paged_attention, prepare_attention

H, KV, D, BS = 4, 2, 8, 4


def _batch(seqs: list[tuple[int, int]], tables: list[list[int]]) -> ForwardBatch:
    """``seqs``: (tokens already cached, tokens this step) per sequence."""
    pos, slots, qlens, ctx = [], [], [], []
    for (cached, new), table in zip(seqs, tables, strict=True):
        for p in range(cached, cached + new):
            pos.append(p)
            slots.append(table[p // BS] * BS + p % BS)
        qlens.append(new)
        ctx.append(cached + new)
    width = max(len(t) for t in tables)
    return ForwardBatch(
        input_ids=torch.zeros(len(pos), dtype=torch.long),
        positions=torch.tensor(pos),
        slot_mapping=torch.tensor(slots),
        query_lens=qlens,
        context_lens=torch.tensor(ctx),
        block_tables=torch.tensor([t + [0] * (width - len(t)) for t in tables]),
        logits_indices=torch.cumsum(torch.tensor(qlens), 0) - 1,
        block_size=BS,
    )


def _naive(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: list[int], window: int | None
) -> torch.Tensor:
    """q [n, H, D] at absolute positions q_pos; k, v [ctx, KV, D] of the whole sequence."""
    k = k.double().repeat_interleave(H // KV, dim=1)
    v = v.double().repeat_interleave(H // KV, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.double(), k) * D**-0.5
    kp = torch.arange(k.shape[0])[None, :]
    qp = torch.tensor(q_pos)[:, None]
    visible = kp <= qp
    if window is not None:
        visible &= (qp - kp) < window
    scores = scores.masked_fill(~visible[None], float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).float()


@pytest.mark.parametrize("window", [None, 3])
def test_mixed_batch_matches_naive(window: int | None) -> None:
    torch.manual_seed(0)
    k_cache = torch.zeros(KV, 32, BS, D)  # head-major: [kv_heads, blocks, block_size, head_dim]
    v_cache = torch.zeros(KV, 32, BS, D)
    # decode (ctx 9), chunk after a cached prefix (5 cached + 6 new), decode (ctx 2), fresh prefill (7)
    seqs = [(8, 1), (5, 6), (1, 1), (0, 7)]
    tables = [[3, 7, 9], [1, 2, 11], [5], [4, 6]]
    history = {i: (torch.randn(c + n, KV, D), torch.randn(c + n, KV, D)) for i, (c, n) in enumerate(seqs)}
    for i, (cached, _) in enumerate(seqs):  # earlier steps already wrote the cached prefix
        for p in range(cached):
            b = tables[i][p // BS]
            k_cache[:, b, p % BS], v_cache[:, b, p % BS] = history[i][0][p], history[i][1][p]
    batch = _batch(seqs, tables)
    meta = prepare_attention(batch)
    assert [(s.start, s.end, s.context_len) for s in meta.prefills] == [(1, 7, 11), (8, 15, 7)]
    assert meta.decode is not None and meta.decode.token_index.tolist() == [0, 7]
    q = torch.randn(batch.input_ids.shape[0], H, D)
    k = torch.cat([history[i][0][c:] for i, (c, _) in enumerate(seqs)])
    v = torch.cat([history[i][1][c:] for i, (c, _) in enumerate(seqs)])
    out = paged_attention(q, k, v, (k_cache, v_cache), batch, scale=D**-0.5, window=window).view(-1, H, D)
    start = 0
    for i, (cached, new) in enumerate(seqs):
        q_pos = list(range(cached, cached + new))
        ref = _naive(q[start : start + new], history[i][0], history[i][1], q_pos, window)
        torch.testing.assert_close(out[start : start + new], ref, atol=1e-5, rtol=1e-5)
        start += new
    # every token's K/V landed in its slot
    assert torch.equal(k_cache[:, tables[3][1], 2], history[3][0][6])


def test_contiguous_decodes_use_a_slice() -> None:
    batch = _batch([(3, 1), (4, 1), (0, 5)], [[1], [2, 3], [4, 5]])
    meta = prepare_attention(batch)
    assert batch.attn is meta
    assert meta.decode is not None and meta.decode.token_index == slice(0, 2)
    assert meta.decode.max_len == 2 * BS  # padded to the longest decode's blocks
    bias = meta.decode.bias(None, 1, 1)  # [D * kv_heads, group, max_len]
    assert bias.shape == (2, 1, 8) and torch.isinf(bias[0, 0, 4:]).all() and (bias[1, 0, :5] == 0).all()
    assert (bias[0, 0, :4] == 0).all() and torch.isinf(bias[1, 0, 5:]).all()
