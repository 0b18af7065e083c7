"""Sampling defaults of model versions (SQLite and PostgreSQL): what artifacts carry, operator overrides
with revision bumps and audit rows, the 0005 migration on a 0004 database with rows, the in-process
defaults book, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from modelyard.engine.loader import packaged_model_path
from modelyard.errors import InvalidRequest, ModelNotFound
from modelyard.registry import Registry
from modelyard.registry.cli import app
from modelyard.registry.defaults import DefaultsBook
from modelyard.registry.sampling import SamplingDefaults, artifact_defaults
from modelyard.store.db import create_db_engine, migrate


def _gguf_with_sampling(path: Path, **keys: float) -> Path:
    """A real (tiny) GGUF file whose metadata carries ``general.sampling.*`` keys."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    writer.add_string("tokenizer.chat_template", "{{ messages }}")
    for key, value in keys.items():
        if key == "top_k":
            writer.add_int32(f"general.sampling.{key}", int(value))
        else:
            writer.add_float32(f"general.sampling.{key}", value)
    writer.add_tensor("w", np.zeros((2, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_artifacts_carry_their_defaults(tmp_path: Path) -> None:
    carried = artifact_defaults(str(_gguf_with_sampling(tmp_path / "m.gguf", temp=0.7, top_p=0.8, top_k=40)))
    assert carried == SamplingDefaults(temperature=0.7, top_p=0.8, top_k=40)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "generation_config.json").write_text(
        json.dumps({"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 300, "top_k": 20, "bos_token_id": 1})
    )
    assert artifact_defaults(str(folder)) == SamplingDefaults(
        temperature=0.6, top_p=0.95, top_k=20, max_tokens=300
    )
    (folder / "generation_config.json").write_text(json.dumps({"temperature": 7.0, "top_p": 0.5}))
    assert artifact_defaults(str(folder)) == SamplingDefaults(top_p=0.5)  # out of range: skipped
    # none carried: the packaged SmolLM2 GGUF, a file that is not GGUF, a remote reference
    assert not artifact_defaults(str(packaged_model_path("smollm2-135m-instruct")))
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
    assert not artifact_defaults(str(tmp_path / "junk.gguf"))
    assert not artifact_defaults("openai_compat://remote-chat")


def test_a_version_records_its_artifact_defaults(registry: Registry, tmp_path: Path) -> None:
    weights = _gguf_with_sampling(tmp_path / "m.gguf", temp=0.3)
    registry.register_model("m")
    info = registry.create_version("m", artifact_uri=str(weights), architecture="llama", context_length=512)
    assert info.artifact_defaults == SamplingDefaults(temperature=0.3)
    assert registry.resolve("m").defaults == SamplingDefaults(temperature=0.3)
    # ensure_model of the same artifact keeps the version (the defaults are not part of what changes it)
    before = registry.revision()
    registry.ensure_model("m", artifact_uri=str(weights), architecture="llama", context_length=512)
    assert registry.revision() == before


def test_set_and_clear_defaults_bump_the_revision_and_are_audited(
    registry: Registry, artifact: Path, database_url: str
) -> None:
    registry.register_model("smol")
    registry.create_version("smol", artifact_uri=str(artifact), architecture="llama", context_length=512)
    registry.create_version("smol", artifact_uri=str(artifact), architecture="llama", context_length=1024)
    before = registry.revision()
    info = registry.set_defaults("smol", 2, {"temperature": 0.2, "stop": "END", "top_k": None}, actor="ops")
    assert info.defaults == SamplingDefaults(temperature=0.2, stop=("END",))
    assert registry.revision() == before + 1
    registry.set_defaults("smol", 2, {"temperature": 0.2, "stop": ["END"]})  # no change, no bump
    assert registry.revision() == before + 1
    assert registry.resolve("smol:1").defaults == SamplingDefaults()
    assert registry.resolve("smol:2").defaults == SamplingDefaults(temperature=0.2, stop=("END",))
    registry.set_defaults("smol", 2, {"top_p": 0.5})  # replaces, does not merge
    assert registry.get_model("smol").version(2).defaults == SamplingDefaults(top_p=0.5)  # type: ignore[union-attr]
    cleared = registry.clear_defaults("smol", 2, actor="ops")
    assert not cleared.defaults and registry.revision() == before + 3
    registry.clear_defaults("smol", 2)  # nothing to clear, no bump
    assert registry.revision() == before + 3
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT actor, action, target FROM audit_log WHERE action LIKE 'model.defaults.%' ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("ops", "model.defaults.set", "smol:2"),
        ("system", "model.defaults.set", "smol:2"),
        ("ops", "model.defaults.clear", "smol:2"),
    ]


@pytest.mark.parametrize(
    ("bad", "param"),
    [
        ({"temperature": 2.5}, "defaults.temperature"),
        ({"temperature": True}, "defaults.temperature"),
        ({"top_p": 0.0}, "defaults.top_p"),
        ({"top_k": -1}, "defaults.top_k"),
        ({"max_tokens": 1.5}, "defaults.max_tokens"),
        ({"repetition_penalty": 0}, "defaults.repetition_penalty"),
        ({"stop": [""]}, "defaults.stop"),
        ({"seed": 1}, "defaults.seed"),
    ],
)
def test_bad_defaults_are_refused_and_change_nothing(
    registry: Registry, artifact: Path, bad: dict[str, object], param: str
) -> None:
    registry.register_model("smol")
    registry.create_version("smol", artifact_uri=str(artifact), architecture="llama", context_length=512)
    registry.set_defaults("smol", 1, {"temperature": 0.5})
    revision = registry.revision()
    with pytest.raises(InvalidRequest) as err:
        registry.set_defaults("smol", 1, bad)
    assert err.value.param == param
    assert registry.resolve("smol").defaults == SamplingDefaults(temperature=0.5)
    assert registry.revision() == revision


def test_defaults_of_unknown_models_and_versions_are_404(registry: Registry) -> None:
    with pytest.raises(ModelNotFound):
        registry.set_defaults("nope", 1, {"temperature": 0})
    registry.register_model("empty")
    with pytest.raises(ModelNotFound) as err:
        registry.set_defaults("empty", 1, {"temperature": 0})
    assert err.value.param == "version"


def test_0005_upgrades_a_0004_database_without_losing_rows(database_url: str, artifact: Path) -> None:
    engine = create_db_engine(database_url)
    try:
        migrate(engine, "0004_model_prices")
        with engine.begin() as conn:  # 0004 rows, written with plain SQL (the ORM knows the new column)
            conn.execute(
                text(
                    "INSERT INTO registry_models (id, name, description, is_base_model, created_at, "
                    "prompt_per_1k, completion_per_1k) VALUES (1, 'a', 'old', false, CURRENT_TIMESTAMP, 0.1, 0.2)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO registry_model_versions (id, model_id, version, artifact_uri, digest, "
                    "architecture, context_length, serving_params, created_at) VALUES "
                    "(1, 1, 1, :uri, NULL, 'llama', 512, '{}', CURRENT_TIMESTAMP)"
                ),
                {"uri": str(artifact)},
            )
            conn.execute(
                text(
                    "INSERT INTO registry_model_aliases (model_id, alias, version_id, updated_at) "
                    "VALUES (1, 'production', 1, CURRENT_TIMESTAMP)"
                )
            )
        migrate(engine)
        registry = Registry("", engine=engine)
        model = registry.get_model("a")
        assert (model.description, model.aliases, len(model.versions)) == ("old", {"production": 1}, 1)
        assert model.prices is not None and not model.versions[0].defaults
        registry.set_defaults("a", 1, {"temperature": 0.2})
        assert registry.resolve("a@production").defaults == SamplingDefaults(temperature=0.2)
    finally:
        engine.dispose()


def test_defaults_book_layers_settings_artifact_and_override(registry: Registry, tmp_path: Path) -> None:
    weights = _gguf_with_sampling(tmp_path / "m.gguf", temp=0.3)
    registry.register_model("m")
    registry.create_version("m", artifact_uri=str(weights), architecture="llama", context_length=512)
    book = DefaultsBook(registry, {"m": {"temperature": 0.9, "top_p": 0.9}, "remote": {"max_tokens": 7}})
    assert book.refresh() is True and book.refresh() is False
    # the artifact's temperature over the settings'; the settings fill top_p
    assert book.for_model("m", "m") == SamplingDefaults(temperature=0.3, top_p=0.9)
    assert book.for_model("remote", "remote") == SamplingDefaults(max_tokens=7)  # not registered
    assert book.for_model("m:7", "m") == SamplingDefaults(temperature=0.9, top_p=0.9)
    registry.set_defaults("m", 1, {"temperature": 0.0})
    assert book.for_model("m", "m").temperature == 0.3  # cached until the revision moves
    assert book.refresh() is True
    assert book.for_model("m:1", "m") == SamplingDefaults(temperature=0.0, top_p=0.9)
    assert book.for_model("m", "m") == SamplingDefaults(temperature=0.0, top_p=0.9)


def test_cli_defaults_set_show_and_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, artifact: Path
) -> None:
    monkeypatch.setenv("MODELYARD_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)  # no modelyard.yaml here: the built-in settings
    runner = CliRunner()
    register = ["register", "smollm2-135m-instruct", "--artifact", str(artifact), "--architecture", "llama",
                "--context-length", "512"]  # fmt: skip
    assert runner.invoke(app, register).exit_code == 0
    out = runner.invoke(app, ["defaults", "set", "smollm2-135m-instruct", "--temperature", "0", "--stop", "END",
                              "--stop", "STOP", "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["defaults"] == {"temperature": 0.0, "stop": ["END", "STOP"]}
    shown = runner.invoke(app, ["show", "smollm2-135m-instruct", "--json"])
    data = json.loads(shown.output)
    assert data["versions"][0]["defaults"] == {"temperature": 0.0, "stop": ["END", "STOP"]}
    assert data["settings_defaults"] == {"temperature": 0.0, "top_p": 0.9}  # shipped for the packaged model
    table = runner.invoke(app, ["show", "smollm2-135m-instruct"]).output
    assert (
        "temperature=0.0" in table
        and "settings defaults (under each version's): temperature=0.0 top_p=0.9" in table
    )
    bad = runner.invoke(app, ["defaults", "set", "smollm2-135m-instruct", "1", "--top-p", "2"])
    assert bad.exit_code == 1 and "top_p" in bad.output
    cleared = runner.invoke(app, ["defaults", "clear", "smollm2-135m-instruct", "1", "--json"])
    assert json.loads(cleared.output)["defaults"] == {}
