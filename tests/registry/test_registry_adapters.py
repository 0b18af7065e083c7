"""Tenant adapters from registry artifacts (SQLite and PostgreSQL): a registered PEFT LoRA folder is
copied and verified against the registry's digest; each bad reference fails with its own 4xx and
leaves nothing behind. Also the ``modelyard adapters register --from-registry`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from modelyard.cli import app
from modelyard.errors import InvalidRequest, ModelNotFound
from modelyard.registry import Registry
from modelyard.registry.adapters import copy_registry_adapter
from modelyard.registry.artifacts import artifact_digest
from modelyard.tenancy.store import TenancyStore
from tenancy_support import SECRET


def write_lora(folder: Path, base: str, *, weights: bytes = b"lora weights", peft_type: str = "LORA") -> Path:
    folder.mkdir(parents=True)
    config = {"peft_type": peft_type, "r": 4, "base_model_name_or_path": base}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def register(registry: Registry, name: str, artifact: Path | str, **version: object) -> str:
    registry.register_model(name)
    info = registry.create_version(
        name,
        artifact_uri=str(artifact),
        architecture="llama",
        context_length=128,
        **version,  # type: ignore[arg-type]
    )
    return f"{name}:{info.version}"


@pytest.fixture
def base_dir(tmp_path: Path, registry: Registry) -> Path:
    base = tmp_path / "tiny"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"base weights")
    register(registry, "tiny", base)
    return base


def test_a_registered_lora_is_copied_and_verified(registry: Registry, base_dir: Path, tmp_path: Path) -> None:
    source = write_lora(tmp_path / "lora", str(base_dir))
    ref = register(registry, "acme-lora", source)
    dest = copy_registry_adapter(registry, ref, "tiny", tmp_path / "store" / "a")
    assert artifact_digest(dest) == registry.resolve(ref).digest
    assert (dest / "adapter_model.safetensors").read_bytes() == b"lora weights"
    # A base named by model name, and a hub id against a cached folder of that repository, match too.
    by_name = register(registry, "by-name", write_lora(tmp_path / "lora2", "tiny"))
    copy_registry_adapter(registry, by_name, "tiny", tmp_path / "store" / "b")
    hub = tmp_path / "models--HuggingFaceTB--SmolLM2-135M"
    hub.mkdir()
    (hub / "w").write_bytes(b"x")
    register(registry, "smol", hub)
    by_hub = register(registry, "by-hub", write_lora(tmp_path / "lora3", "HuggingFaceTB/SmolLM2-135M"))
    copy_registry_adapter(registry, by_hub, "smol", tmp_path / "store" / "c")


@pytest.mark.parametrize(
    ("ref", "error", "param"),
    [
        ("nope:1", ModelNotFound, "artifact"),
        ("acme-lora:9", ModelNotFound, "artifact"),
        ("acme-lora", InvalidRequest, "artifact"),
        ("acme-lora@production", InvalidRequest, "artifact"),
        ("gguf:1", InvalidRequest, "artifact"),
        ("no-weights:1", InvalidRequest, "artifact"),
        ("prefix-tuning:1", InvalidRequest, "artifact"),
        ("other-base:1", InvalidRequest, "base_model"),
        ("remote:1", InvalidRequest, "artifact"),
        ("tampered:1", InvalidRequest, "artifact"),
    ],
)
def test_bad_references_fail_and_leave_nothing(
    registry: Registry, base_dir: Path, tmp_path: Path, ref: str, error: type[Exception], param: str
) -> None:
    register(registry, "acme-lora", write_lora(tmp_path / "good", str(base_dir)))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    register(registry, "gguf", gguf)
    no_weights = write_lora(tmp_path / "nw", str(base_dir))
    (no_weights / "adapter_model.safetensors").rename(no_weights / "weights.bin")
    register(registry, "no-weights", no_weights)
    register(registry, "prefix-tuning", write_lora(tmp_path / "pt", str(base_dir), peft_type="PREFIX_TUNING"))
    register(registry, "other-base", write_lora(tmp_path / "ob", "some/other-model"))
    register(registry, "remote", "openai_compat://somewhere")
    tampered = write_lora(tmp_path / "tp", str(base_dir))
    register(registry, "tampered", tampered)
    (tampered / "adapter_model.safetensors").write_bytes(b"changed after registration")
    dest = tmp_path / "store" / "x"
    with pytest.raises(error) as err:
        copy_registry_adapter(registry, ref, "tiny", dest)
    assert err.value.param == param  # type: ignore[attr-defined]
    assert not dest.exists()


def test_an_invisible_version_is_a_404_like_a_missing_one(
    registry: Registry, base_dir: Path, tmp_path: Path
) -> None:
    ref = register(registry, "secret-lora", write_lora(tmp_path / "s", str(base_dir)))
    with pytest.raises(ModelNotFound) as hidden:
        copy_registry_adapter(registry, ref, "tiny", tmp_path / "d", visible=lambda _m: False)
    with pytest.raises(ModelNotFound) as missing:
        copy_registry_adapter(registry, "secret-lorb:1", "tiny", tmp_path / "d")
    assert hidden.value.message.replace("secret-lora", "X") == missing.value.message.replace(
        "secret-lorb", "X"
    )


def test_cli_registers_from_the_registry(tmp_path: Path) -> None:
    cfg = tmp_path / "modelyard.yaml"
    db = f"sqlite:///{tmp_path / 'm.db'}"
    data = tmp_path / "data"
    cfg.write_text(yaml.safe_dump({"data_dir": str(data), "database_url": db, "tenancy": {"secret": SECRET}}))
    registry = Registry(db)
    registry.migrate()
    base = tmp_path / "tiny"
    base.mkdir()
    (base / "w").write_bytes(b"w")
    register(registry, "tiny", base)
    ref = register(registry, "acme-lora", write_lora(tmp_path / "lora", str(base)))
    register(registry, "wrong", write_lora(tmp_path / "wrong", "other"))
    registry.close()
    runner = CliRunner()
    assert runner.invoke(app, ["tenants", "create", "acme", "--config", str(cfg)]).exit_code == 0
    args = [
        "adapters",
        "register",
        "--tenant",
        "acme",
        "--base",
        "tiny",
        "--name",
        "support",
        "--config",
        str(cfg),
    ]
    r = runner.invoke(app, [*args, "--from-registry", ref])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["id"] == "tiny:support"
    store = TenancyStore(db, SECRET.encode())
    try:
        (adapter,) = store.list_adapters("acme")
        assert Path(adapter.path).is_relative_to(data / "adapters" / "acme")
        assert (Path(adapter.path) / "adapter_model.safetensors").read_bytes() == b"lora weights"
        r = runner.invoke(
            app, [*args[:-4], "--name", "bad", "--config", str(cfg), "--from-registry", "wrong:1"]
        )
        assert r.exit_code == 1 and "not of `tiny`" in r.output
        assert [a.name for a in store.list_adapters("acme")] == ["support"]
        r = runner.invoke(app, ["adapters", "remove", "acme", "tiny:support", "--config", str(cfg)])
        assert r.exit_code == 0, r.output
        assert not Path(adapter.path).exists()  # the stored copy goes with the adapter
    finally:
        store.close()
