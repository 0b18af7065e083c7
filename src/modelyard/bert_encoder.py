"""A BERT sentence encoder in plain PyTorch for sentence-transformers folders of the common shape.

``Transformer(BertModel) -> Pooling(mean) -> Normalize``, which is what the packaged all-MiniLM-L6-v2
is. Tokenised by the folder's ``tokenizer.json`` through ``tokenizers``; weights read with
``safetensors``. It gives the same vectors as sentence-transformers (checked in the tests) without
importing sentence-transformers and transformers' model code, which is most of a warm start's
seconds. Any other folder layout is loaded by :class:`modelyard.embeddings.SentenceTransformerEmbedder`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

_MEAN_POOLING = {
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
}
_MODULES = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def supported(folder: Path) -> bool:
    """Whether ``folder`` is a BERT + mean pooling + normalise sentence-transformers folder we can load."""
    modules = _read_json(folder / "modules.json")
    config = _read_json(folder / "config.json") or {}
    if not modules or [m.get("type") for m in modules] != _MODULES:
        return False
    if modules[0].get("path") not in ("", None):
        return False
    pooling = _read_json(folder / modules[1]["path"] / "config.json") or {}
    if any(pooling.get(k, v) != v for k, v in _MEAN_POOLING.items()):
        return False
    if pooling.get("include_prompt", True) is not True:
        return False
    return (
        config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and (folder / "tokenizer.json").is_file()
        and (folder / "model.safetensors").is_file()
    )


class _Bert(torch.nn.Module):
    """BertModel's encoder, eval only (no dropout, no pooler): hidden states of the last layer."""

    def __init__(self, config: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.layers = int(config["num_hidden_layers"])
        self.w = {k.removeprefix("bert."): v for k, v in weights.items()}

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = self.w
        length = ids.shape[1]
        x = w["embeddings.word_embeddings.weight"][ids]
        x = (
            x
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        batch, _, hidden = x.shape
        head_dim = hidden // self.heads
        keep = mask[:, None, None, :].bool()  # (batch, 1, 1, length): attend to real tokens only
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(batch, length, self.heads, head_dim).transpose(1, 2)

            q = split(self._linear(x, f"{p}.attention.self.query"))
            k = split(self._linear(x, f"{p}.attention.self.key"))
            v = split(self._linear(x, f"{p}.attention.self.value"))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1.0 / math.sqrt(head_dim))
            a = a.transpose(1, 2).reshape(batch, length, hidden)
            x = self._norm(
                self._linear(a, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm"
            )
            h = F.gelu(self._linear(x, f"{p}.intermediate.dense"))
            x = self._norm(self._linear(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        return x


class BertEmbedder:
    """Mean-pooled, L2-normalised BERT sentence embeddings (the :class:`~modelyard.embeddings.Embedder`)."""

    def __init__(self, folder: Path, *, max_batch: int = 64) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text())
        st_config = _read_json(folder / "sentence_bert_config.json") or {}
        self.dimensions = int(config["hidden_size"])
        self.max_input_tokens = int(st_config.get("max_seq_length") or config["max_position_embeddings"])
        self._max_batch = max_batch
        self._pad_id = int(config.get("pad_token_id") or 0)
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._model = _Bert(config, load_file(str(folder / "model.safetensors")))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts, add_special_tokens=True)]

    def decode(self, token_ids: list[int]) -> str:
        return str(self._tokenizer.decode(token_ids, skip_special_tokens=True))

    def _ids(self, texts: list[str]) -> list[list[int]]:
        out = []
        for e in self._tokenizer.encode_batch(texts, add_special_tokens=True):
            ids = e.ids
            if len(ids) > self.max_input_tokens:  # keep [CLS] ... and the closing [SEP], as truncation does
                ids = ids[: self.max_input_tokens - 1] + ids[-1:]
            out.append(ids)
        return out

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> np.ndarray:
        result = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return result
        ids = self._ids(texts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # similar lengths share a batch
        for start in range(0, len(order), self._max_batch):
            chunk = order[start : start + self._max_batch]
            width = max(len(ids[i]) for i in chunk)
            batch = torch.full((len(chunk), width), self._pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                batch[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            hidden = self._model(batch, mask)
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            result[chunk] = F.normalize(pooled, p=2, dim=1).numpy()
        return result
