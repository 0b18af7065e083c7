"""Tenant adapters taken from registry artifacts: a registered version that holds a PEFT LoRA folder.

:func:`copy_registry_adapter` checks, in order (cheap checks first), that ``NAME:VERSION`` exists (404
otherwise), that its artifact is a local PEFT LoRA folder (``adapter_config.json`` with
``peft_type: LORA`` and ``adapter_model.safetensors``) whose base model is the one asked for, then
copies it under ``dest`` and checks that the copy's content digest equals the digest the registry
recorded (400 otherwise: the folder changed since it was registered). The tenant's adapter then
points at the verified copy, so a later change to the registry's folder never reaches it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidRequest, ModelNotFound
from modelyard.registry.artifacts import artifact_digest, local_path
from modelyard.registry.records import ModelInfo, VersionInfo, parse_ref
from modelyard.registry.service import Registry

MAX_ADAPTER_BYTES = 2 << 30  # 2 GiB: a LoRA adapter is megabytes; anything larger is not one
_WEIGHTS = "adapter_model.safetensors"


def check_peft_folder(path: Path, param: str, *, weights: tuple[str, ...] = (_WEIGHTS,)) -> dict[str, Any]:
    """The ``adapter_config.json`` of the PEFT LoRA folder ``path``; ``InvalidRequest`` if it is not one."""
    config_file = path / "adapter_config.json"
    if not path.is_dir() or not config_file.is_file():
        raise InvalidRequest(f"{path} is not a PEFT adapter folder (no adapter_config.json)", param=param)
    if not any((path / w).is_file() for w in weights):
        raise InvalidRequest(f"{path} has no {' or '.join(weights)}", param=param)
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"{config_file} is not valid JSON: {exc}", param=param) from None
    if not isinstance(config, dict):
        raise InvalidRequest(f"{config_file} is not a JSON object", param=param)
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise InvalidRequest(f"{path} is a {config['peft_type']} adapter; only LoRA is served", param=param)
    return config


def _names_of(base: str, registry: Registry) -> set[str]:
    """What an adapter may call its base: the model name and its registered artifacts' paths."""
    names = {base}
    try:
        model = registry.get_model(base)
    except ModelNotFound:
        return names
    for v in model.versions:
        path = local_path(v.artifact_uri)
        if path is not None:
            names.add(str(path))
    return names


def _same_base(claimed: str, names: set[str]) -> bool:
    candidate = Path(claimed).expanduser()
    if candidate.exists():
        claimed = str(candidate.resolve())
    if claimed in names:
        return True
    # A hub id ("HuggingFaceTB/SmolLM2-135M") against the model name or a cached folder of the same
    # repository ("models--HuggingFaceTB--SmolLM2-135M").
    tail = _tail(claimed)
    return any(_tail(n) == tail or _tail(n).endswith("--" + tail) for n in names)


def _tail(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


def find_adapter_version(
    registry: Registry, ref: str, visible: Callable[[ModelInfo], bool] = lambda _m: True
) -> VersionInfo:
    """The version ``NAME:VERSION`` names; 404 if unknown or not ``visible`` to the caller (same words)."""
    if not isinstance(ref, str) or ":" not in ref or "@" in ref:
        raise InvalidRequest(
            f"artifact {ref!r} must name a registry version as NAME:VERSION", param="artifact"
        )
    name, _, number = parse_ref(ref)
    missing = ModelNotFound(f"the registry has no version `{ref}`", param="artifact")
    try:
        model = registry.get_model(name)
    except ModelNotFound:
        raise missing from None
    info = model.version(number or 0)
    if info is None or not visible(model):
        raise missing
    return info


def copy_registry_adapter(
    registry: Registry,
    ref: str,
    base_model: str,
    dest: Path,
    visible: Callable[[ModelInfo], bool] = lambda _m: True,
) -> Path:
    """Verify the registry version ``ref`` as a LoRA adapter of ``base_model`` and copy it to ``dest``
    (which must not exist). Raises ``ModelNotFound`` (404) or ``InvalidRequest`` (400); on any error
    nothing is left at ``dest``."""
    info = find_adapter_version(registry, ref, visible)
    source = local_path(info.artifact_uri)
    if source is None or not source.exists():
        raise InvalidRequest(f"`{ref}` is not a local artifact ({info.artifact_uri})", param="artifact")
    config = check_peft_folder(source, "artifact")
    claimed = info.serving_params.get("base_model") or config.get("base_model_name_or_path")
    if not isinstance(claimed, str) or not claimed:
        raise InvalidRequest(f"`{ref}`: adapter_config.json does not name its base model", param="artifact")
    if not _same_base(claimed, _names_of(base_model, registry)):
        raise InvalidRequest(
            f"`{ref}` is an adapter of `{claimed}`, not of `{base_model}`", param="base_model"
        )
    if info.digest is None:
        raise InvalidRequest(f"`{ref}` has no recorded digest to verify against", param="artifact")
    size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    if size > MAX_ADAPTER_BYTES:
        raise InvalidRequest(
            f"`{ref}` is {size} bytes; an adapter is at most {MAX_ADAPTER_BYTES} bytes", param="artifact"
        )
    if dest.exists():
        raise InvalidRequest(f"an adapter is already stored at {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, dest)
        digest = artifact_digest(dest)
        if digest != info.digest:
            raise InvalidRequest(
                f"`{ref}` changed since it was registered: its content digest is {digest}, "
                f"the registry recorded {info.digest}",
                param="artifact",
            )
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest
