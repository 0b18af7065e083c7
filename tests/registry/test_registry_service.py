"""The Registry service on SQLite and on PostgreSQL: versions, aliases, resolution, errors, concurrency."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from modelyard.errors import Conflict, InvalidRequest, ModelNotFound
from modelyard.registry import Registry, ResolvedModel
from modelyard.registry.models import AliasRow, VersionRow
from modelyard.registry.records import MAX_SERVING_PARAMS_BYTES
from modelyard.store import create_db_engine


def _version(registry: Registry, artifact: Path, name: str = "m", **extra: Any):  # type: ignore[no-untyped-def]
    return registry.create_version(
        name, artifact_uri=str(artifact), architecture="llama", context_length=2048, **extra
    )


def test_register_get_and_list(registry: Registry) -> None:
    info = registry.register_model("smol", description="tiny", is_base_model=True, owner="team-a")
    registry.register_model("alpha")
    assert (info.name, info.description, info.is_base_model, info.owner) == ("smol", "tiny", True, "team-a")
    assert info.versions == () and info.aliases == {}
    assert registry.get_model("smol") == info
    assert [m.name for m in registry.list_models()] == ["alpha", "smol"]
    with pytest.raises(Conflict, match="already registered"):
        registry.register_model("smol")
    with pytest.raises(ModelNotFound, match="'nope' does not exist"):
        registry.get_model("nope")


@pytest.mark.parametrize("name", ["", "a b", "a@b", "a:b", "-lead", ".lead", "x" * 129, "a/b", "é"])
def test_invalid_model_names_are_rejected(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        registry.register_model(name)
    assert info.value.param == "name"
    assert registry.list_models() == []


def test_versions_are_numbered_and_digest_the_artifact(
    registry: Registry, artifact: Path, tmp_path: Path
) -> None:
    registry.register_model("m")
    first = _version(registry, artifact, quantization="Q4_1", serving_params={"max_tokens": 256})
    assert first.version == 1
    assert first.digest == "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert first.artifact_uri == str(artifact.resolve())
    assert (first.quantization, first.serving_params) == ("Q4_1", {"max_tokens": 256})

    folder = tmp_path / "adapter"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.json").write_text("{}")
    (folder / "sub" / "b.bin").write_bytes(b"\x00\x01")
    second = _version(registry, folder)
    assert second.version == 2 and second.digest is not None and second.digest.startswith("sha256:")
    (folder / "sub" / "b.bin").write_bytes(b"\x00\x02")
    third = _version(registry, folder)
    assert third.version == 3 and third.digest != second.digest

    remote = registry.create_version(
        "m", artifact_uri="openai_compat://vllm-a", architecture="remote", context_length=32768
    )
    assert (remote.version, remote.digest, remote.artifact_uri) == (4, None, "openai_compat://vllm-a")
    given = _version(registry, artifact, digest="ab" * 32)
    assert given.digest == "sha256:" + "ab" * 32
    assert [v.version for v in registry.get_model("m").versions] == [1, 2, 3, 4, 5]


def test_versions_are_immutable(registry: Registry, artifact: Path, database_url: str) -> None:
    registry.register_model("m")
    first = _version(registry, artifact, serving_params={"temperature": 0.7})
    artifact.write_bytes(b"new weights")
    _version(registry, artifact)
    assert registry.get_model("m").versions[0] == first

    engine = create_db_engine(database_url)
    try:
        with pytest.raises(Conflict, match="immutable"), Session(engine) as session, session.begin():
            row = session.scalars(select(VersionRow).where(VersionRow.version == 1)).one()
            row.artifact_uri = "/elsewhere"
    finally:
        engine.dispose()
    assert registry.get_model("m").versions[0] == first


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"artifact_uri": "/does/not/exist.gguf"}, "artifact_uri"),
        ({"artifact_uri": ""}, "artifact_uri"),
        ({"architecture": "has space"}, "architecture"),
        ({"context_length": 0}, "context_length"),
        ({"context_length": True}, "context_length"),
        ({"quantization": "x" * 40}, "quantization"),
        ({"digest": "md5:abc"}, "digest"),
        ({"serving_params": {"blob": "x" * MAX_SERVING_PARAMS_BYTES}}, "serving_params"),
        ({"serving_params": {"nan": float("nan")}}, "serving_params"),
        ({"serving_params": ["not", "an", "object"]}, "serving_params"),
    ],
)
def test_invalid_versions_are_rejected_without_writing(
    registry: Registry, artifact: Path, fields: dict[str, Any], param: str
) -> None:
    registry.register_model("m")
    before = registry.revision()
    args: dict[str, Any] = {"artifact_uri": str(artifact), "architecture": "llama", "context_length": 2048}
    with pytest.raises(InvalidRequest) as info:
        registry.create_version("m", **{**args, **fields})
    assert info.value.param == param
    assert registry.get_model("m").versions == ()
    assert registry.revision() == before


def test_description_length_is_capped(registry: Registry) -> None:
    with pytest.raises(InvalidRequest) as info:
        registry.register_model("m", description="x" * 5000)
    assert info.value.param == "description"


def test_version_of_unknown_model_is_not_found(registry: Registry, artifact: Path) -> None:
    with pytest.raises(ModelNotFound, match="'ghost' does not exist"):
        _version(registry, artifact, name="ghost")


def test_aliases_set_move_and_delete(registry: Registry, artifact: Path) -> None:
    registry.register_model("m")
    _version(registry, artifact)
    artifact.write_bytes(b"v2")
    _version(registry, artifact)
    registry.set_alias("m", "production", 1)
    registry.set_alias("m", "canary", 2)
    model = registry.get_model("m")
    assert model.aliases == {"canary": 2, "production": 1}
    assert model.versions[0].aliases == ("production",) and model.versions[1].aliases == ("canary",)
    registry.set_alias("m", "production", 2)
    assert registry.get_model("m").aliases == {"canary": 2, "production": 2}
    assert registry.get_model("m").versions[1].aliases == ("canary", "production")
    registry.delete_alias("m", "canary")
    assert registry.get_model("m").aliases == {"production": 2}

    with pytest.raises(ModelNotFound, match="no version 9"):
        registry.set_alias("m", "production", 9)
    with pytest.raises(ModelNotFound, match="no alias 'canary'"):
        registry.delete_alias("m", "canary")
    with pytest.raises(InvalidRequest) as info:
        registry.set_alias("m", "Bad Alias", 1)
    assert info.value.param == "alias"
    with pytest.raises(InvalidRequest) as info:
        registry.set_alias("m", "ok", 0)
    assert info.value.param == "version"
    with pytest.raises(ModelNotFound):
        registry.set_alias("ghost", "production", 1)
    assert registry.get_model("m").aliases == {"production": 2}


def test_resolve_forms(registry: Registry, artifact: Path) -> None:
    registry.register_model("m", is_base_model=True)
    with pytest.raises(ModelNotFound, match="no versions yet"):
        registry.resolve("m")
    _version(registry, artifact, tokenizer="hf:HuggingFaceTB/SmolLM2-135M-Instruct")
    artifact.write_bytes(b"v2")
    _version(registry, artifact)
    artifact.write_bytes(b"v3")
    _version(registry, artifact)

    assert registry.resolve("m").version == 3  # no production alias: latest
    registry.set_alias("m", "production", 2)
    registry.set_alias("m", "canary", 1)
    resolved = registry.resolve("m")
    assert isinstance(resolved, ResolvedModel)
    assert (resolved.name, resolved.version, resolved.aliases, resolved.is_base_model) == (
        "m",
        2,
        ("production",),
        True,
    )
    assert registry.resolve("m@production").version == 2
    canary = registry.resolve("m@canary")
    assert (canary.version, canary.tokenizer) == (1, "hf:HuggingFaceTB/SmolLM2-135M-Instruct")
    assert registry.resolve("m:3").version == 3
    assert registry.resolve("m:1").digest == canary.digest


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("ghost", "'ghost' does not exist"),
        ("ghost@production", "'ghost' does not exist"),
        ("m@shadow", "has no alias 'shadow'"),
        ("m:7", "has no version 7"),
        ("m:0", "positive integer"),
        ("m:latest", "positive integer"),
        ("m@", "invalid alias"),
        ("bad name", "does not exist"),
        ("", "a model reference must be"),
    ],
)
def test_resolve_errors_say_what_is_missing(
    registry: Registry, artifact: Path, ref: str, message: str
) -> None:
    registry.register_model("m")
    _version(registry, artifact)
    with pytest.raises(ModelNotFound, match=message) as info:
        registry.resolve(ref)
    assert info.value.param == "model"


def test_registry_survives_reopening(database_url: str, artifact: Path) -> None:
    first = Registry(database_url)
    first.migrate()
    first.ensure_model(
        "m", artifact_uri=str(artifact), architecture="llama", context_length=2048, is_base_model=True
    )
    first.set_alias("m", "canary", 1)
    revision, before = first.revision(), first.get_model("m")
    first.close()

    again = Registry(database_url)
    try:
        again.migrate()
        assert again.get_model("m") == before
        assert again.revision() == revision
        assert again.resolve("m@canary").is_base_model is True
    finally:
        again.close()


def test_ensure_model_takes_a_known_digest_instead_of_hashing(registry: Registry, artifact: Path) -> None:
    """The engine passes the GGUF digest it remembers; the registry stores it as given (a start
    does not hash the file again), and the same digest again is the same version."""
    known = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    fields: dict[str, Any] = {"artifact_uri": str(artifact), "architecture": "llama", "context_length": 2048}
    first = registry.ensure_model("m", digest=known, **fields)
    assert first.version == 1 and first.digest == known
    assert registry.ensure_model("m", digest=known, **fields).version == 1
    assert registry.ensure_model("m", **fields).version == 1  # hashing it gives the same digest
    other = "sha256:" + "ab" * 32
    second = registry.ensure_model("m", digest=other, **fields)  # a new digest: a new version
    assert second.version == 2 and second.digest == other
    with pytest.raises(InvalidRequest, match="invalid digest"):
        registry.ensure_model("m", digest="md5:1234", **fields)


def test_revision_bumps_on_every_change_only(registry: Registry, artifact: Path) -> None:
    seen = [registry.revision()]

    def bumped(action: Callable[[], object]) -> bool:
        action()
        seen.append(registry.revision())
        return seen[-1] > seen[-2]

    assert bumped(lambda: registry.register_model("m"))
    assert bumped(lambda: _version(registry, artifact))
    assert bumped(lambda: registry.set_alias("m", "production", 1))
    assert not bumped(lambda: registry.set_alias("m", "production", 1))
    assert not bumped(lambda: registry.resolve("m"))
    assert bumped(lambda: registry.delete_alias("m", "production"))
    with pytest.raises(Conflict):
        registry.register_model("m")
    assert registry.revision() == seen[-1]


def test_ensure_model_bootstraps_then_is_idempotent(registry: Registry, artifact: Path) -> None:
    def ensure() -> ResolvedModel:
        return registry.ensure_model(
            "gemma",
            artifact_uri=str(artifact),
            architecture="gemma3",
            context_length=32768,
            quantization="Q4_K_M",
            is_base_model=True,
            serving_params={"chat_template": "gemma"},
        )

    first = ensure()
    assert (first.version, first.aliases, first.is_base_model, first.quantization) == (
        1,
        ("production",),
        True,
        "Q4_K_M",
    )
    revision = registry.revision()
    assert ensure() == first
    assert registry.revision() == revision

    artifact.write_bytes(b"retrained weights")
    second = ensure()
    assert (second.version, second.aliases) == (2, ("production",))
    assert second.digest != first.digest
    assert registry.get_model("gemma").aliases == {"production": 2}

    # An operator rolls production back; the bootstrap of an already-registered artifact keeps that choice.
    registry.set_alias("gemma", "production", 1)
    artifact.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    assert ensure().version == 1
    assert len(registry.get_model("gemma").versions) == 2


def test_failed_write_leaves_no_partial_rows(registry: Registry, artifact: Path) -> None:
    before = registry.revision()

    def fail(*_: object) -> None:
        raise RuntimeError("disk full")

    event.listen(AliasRow, "before_insert", fail)
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            registry.ensure_model("m", artifact_uri=str(artifact), architecture="llama", context_length=2048)
    finally:
        event.remove(AliasRow, "before_insert", fail)
    # The model row and version 1 were written before the alias failed: all rolled back.
    assert registry.list_models() == []
    assert registry.revision() == before
    assert (
        registry.ensure_model(
            "m", artifact_uri=str(artifact), architecture="llama", context_length=2048
        ).version
        == 1
    )


def _run_together(count: int, work: Callable[[int], object]) -> list[object]:
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except BaseException as exc:  # returned for the assertion
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_ensure_model_does_not_duplicate(database_url: str, artifact: Path) -> None:
    registries = [Registry(database_url) for _ in range(6)]
    registries[0].migrate()
    try:
        results = _run_together(
            len(registries),
            lambda i: registries[i].ensure_model(
                "m", artifact_uri=str(artifact), architecture="llama", context_length=2048
            ),
        )
        assert all(isinstance(r, ResolvedModel) for r in results), results
        assert len({(r.version, r.digest) for r in results}) == 1  # type: ignore[union-attr]
        model = registries[0].get_model("m")
        assert [v.version for v in model.versions] == [1]
        assert model.aliases == {"production": 1}
    finally:
        for reg in registries:
            reg.close()


def test_concurrent_create_version_numbers_do_not_collide(database_url: str, artifact: Path) -> None:
    registries = [Registry(database_url) for _ in range(6)]
    registries[0].migrate()
    registries[0].register_model("m")
    try:
        results = _run_together(len(registries), lambda i: _version(registries[i], artifact).version)  # type: ignore[union-attr]
        assert sorted(results) == [1, 2, 3, 4, 5, 6]  # type: ignore[type-var]
    finally:
        for reg in registries:
            reg.close()
