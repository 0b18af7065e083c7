"""Token counts and context windows of target models, resolved the way ``modelyard serve`` does.

A target model name (``name``, ``name@alias`` or ``name:version``: the registry name counts) is
looked up in the settings' ``local_models`` (their ``source``: ``packaged:<name>``, a GGUF file or a
Hugging Face folder), then among the packaged models. Remote deployments and unknown names have no
tokenizer here: :meth:`ModelCatalog.window` returns an :class:`Unavailable` reason (lint reports it
as PL005, never crashes).

Nothing is downloaded and nothing is converted: a GGUF already converted by the server (found in the
model cache by the digest index the loader keeps) is read from its folder; otherwise the tokenizer
is built from the GGUF itself (transformers' GGUF tokenizer path, a couple of seconds for SmolLM2)
and the window is read from ``<arch>.context_length``. The window is the model's
``max_position_embeddings``, capped by ``engine.max_model_len`` when the settings set it (the
engine's KV-cache size can cap it further at run time; that depends on the machine, not the prompt).

Each model's tokenizer is loaded once per :class:`ModelCatalog`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.settings import Settings

PACKAGED = ("smollm2-135m-instruct", "gemma-3-270m")  # as modelyard.engine.loader.PACKAGED (no torch import)


@dataclass(slots=True)
class ModelWindow:
    """A target model's tokenizer (with its chat template) and context window in tokens."""

    name: str
    tokenizer: Any
    chat_template: str | None
    context_length: int

    def count(self, rendered: list[dict[str, str]] | str) -> int:
        """Prompt tokens of ``rendered`` as the local backend counts them (chat template applied)."""
        tok = self.tokenizer
        if isinstance(rendered, str):
            return len(tok(rendered, add_special_tokens=True)["input_ids"])
        messages = [
            {"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]}
            for m in rendered
        ]
        text = tok.apply_chat_template(
            messages, chat_template=self.chat_template, add_generation_prompt=True, tokenize=False
        )
        return len(tok(text, add_special_tokens=False)["input_ids"])


@dataclass(slots=True, frozen=True)
class Unavailable:
    """Why a model's window cannot be checked (shown in the PL005 message)."""

    reason: str


@dataclass(slots=True)
class ModelCatalog:
    """Resolves target model names to :class:`ModelWindow` s, loading each tokenizer at most once."""

    settings: Settings
    _cache: dict[str, ModelWindow | Unavailable] = field(default_factory=dict)
    _sources: dict[str, tuple[Any, int, str | None]] = field(default_factory=dict)

    def window(self, ref: str) -> ModelWindow | Unavailable:
        name = ref.split("@", 1)[0].split(":", 1)[0]
        if name not in self._cache:
            self._cache[name] = self._resolve(name)
        return self._cache[name]

    def _resolve(self, name: str) -> ModelWindow | Unavailable:
        local = next((m for m in self.settings.local_models if m.name == name), None)
        chat_template = None
        if local is not None:
            source, chat_template = local.source.removeprefix("packaged:"), local.chat_template
        elif name in PACKAGED:
            source = name
        elif any(d.model == name for d in self.settings.deployments):
            return Unavailable(f"model `{name}` is a remote deployment; its tokenizer is not available here")
        else:
            return Unavailable(f"model `{name}` is not a local model of this configuration")
        try:
            if source not in self._sources:  # two names over one source share one tokenizer
                self._sources[source] = _load(source, self.settings.resolved_model_cache_dir)
            tokenizer, context, template = self._sources[source]
        except Exception as exc:  # any failure to read a model is a finding, never a crash
            return Unavailable(f"model `{name}` could not be read ({type(exc).__name__}: {exc})")
        cap = self.settings.engine.get("max_model_len")
        if isinstance(cap, int) and cap > 0:
            context = min(context, cap)
        return ModelWindow(name, tokenizer, chat_template or template, context)


def _load(source: str, cache_dir: Path) -> tuple[Any, int, str | None]:
    """(tokenizer, context length, chat template) of a packaged name, a GGUF file or an HF folder."""
    from modelyard.engine import loader

    path = Path(source)
    if source in PACKAGED and not path.exists():
        path = loader.packaged_model_path(source, cache_dir=cache_dir)
    if not path.exists():
        raise FileNotFoundError(f"model source {str(path)!r} does not exist")
    if path.is_file():
        folder = _converted_folder(path, cache_dir)
        if folder is None:
            return _from_gguf(path)
    else:
        folder = path
    tokenizer = loader._load_tokenizer(folder)
    config = json.loads((folder / "config.json").read_text())
    template = tokenizer.chat_template
    if template is None and config.get("model_type", "").startswith("gemma3"):
        template = loader.GEMMA_CHAT_TEMPLATE
    return tokenizer, int(config.get("max_position_embeddings") or 8192), template


def _converted_folder(gguf: Path, cache_dir: Path) -> Path | None:
    """The server's converted folder for ``gguf``, if its digest index says it exists (read only)."""
    try:
        index = json.loads((cache_dir / "gguf-digests.json").read_text())
        stat = gguf.stat()
        entry = index[str(gguf.resolve())]
        if entry["stamp"] != [stat.st_size, stat.st_mtime_ns]:
            return None
        folder = cache_dir / str(entry["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return folder if (folder / "modelyard.json").exists() else None


def _from_gguf(path: Path) -> tuple[Any, int, str | None]:
    from modelyard.engine.gguf_convert import _tokenizer_class, read_gguf
    from modelyard.engine.loader import GEMMA_CHAT_TEMPLATE

    gguf = read_gguf(path)
    arch = gguf.architecture
    context = int(gguf.metadata.get(f"{arch}.context_length") or 8192)
    model_type = "gemma3_text" if arch == "gemma3" else arch
    tokenizer = _tokenizer_class(model_type).from_pretrained(path.parent, gguf_file=path.name)
    template = tokenizer.chat_template
    if template is None and arch == "gemma3":
        template = GEMMA_CHAT_TEMPLATE
    return tokenizer, context, template
