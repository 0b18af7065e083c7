"""The context-window rule (PL004) with the real packaged SmolLM2 tokenizer, and model resolution (PL005)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.registry.lint import ModelCatalog, lint_spec
from modelyard.registry.lint.cli import lint_app
from modelyard.registry.lint.context import ModelWindow, Unavailable
from modelyard.registry.prompt_spec import render, spec_from_dict
from modelyard.settings import LocalModelSettings, RemoteDeploymentSettings, Settings

SMOLLM2 = "smollm2-135m-instruct"


def _chat(max_tokens: int | None, *, model: str | None = SMOLLM2, doc: str = "The quick brown fox.") -> dict:
    raw: dict = {
        "name": "p",
        "messages": [
            {"role": "developer", "content": "Summarise in one line."},
            {"role": "user", "content": "Text: {{ doc }}"},
        ],
        "variables": [{"name": "doc", "type": "string"}],
        "sample_variables": {"doc": doc},
        "model": model,
    }
    if max_tokens is not None:
        raw["parameters"] = {"max_tokens": max_tokens}
    return raw


def _rules(raw: dict, catalog: ModelCatalog, **kw: str) -> dict[str, str]:
    return {f.rule: f.message for f in lint_spec(spec_from_dict(raw), None, "x", catalog=catalog, **kw)}


@pytest.fixture(scope="module")
def smollm2(catalog: ModelCatalog) -> ModelWindow:
    window = catalog.window(SMOLLM2)
    assert isinstance(window, ModelWindow), window
    return window


@pytest.mark.slow
def test_smollm2_window_and_counting(smollm2: ModelWindow) -> None:
    assert smollm2.context_length == 8192
    messages = [{"role": "user", "content": "Hi"}]
    text = smollm2.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")  # ChatML, as the server renders it
    assert smollm2.count(messages) == len(smollm2.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert smollm2.count("Hello world") == 2


@pytest.mark.slow
def test_overflow_is_exact_at_the_window_boundary(smollm2: ModelWindow, catalog: ModelCatalog) -> None:
    spec = spec_from_dict(_chat(1))
    prompt = smollm2.count(render(spec, spec.sample_variables))
    assert prompt > 10
    fits = 8192 - prompt
    assert "PL004" not in _rules(_chat(fits), catalog)
    message = _rules(_chat(fits + 1), catalog)["PL004"]
    assert f"rendered prompt is {prompt} tokens on {SMOLLM2} + max_tokens {fits + 1} = 8193" in message
    assert catalog.window(f"{SMOLLM2}@production") is smollm2  # loaded once, name refs share it


@pytest.mark.slow
def test_names_over_one_source_share_its_tokenizer(tmp_path: Path, smollm2: ModelWindow) -> None:
    models = [
        LocalModelSettings(name="a", source=f"packaged:{SMOLLM2}"),
        LocalModelSettings(name="b", source=f"packaged:{SMOLLM2}", chat_template="{{ messages[0].content }}"),
    ]
    catalog = ModelCatalog(Settings(data_dir=tmp_path, local_models=models))
    a, b = catalog.window("a"), catalog.window("b")
    assert isinstance(a, ModelWindow) and isinstance(b, ModelWindow)
    assert a.tokenizer is b.tokenizer
    assert b.count([{"role": "user", "content": "Hello world"}]) == 2  # the settings' template wins
    assert a.count([{"role": "user", "content": "Hello world"}]) == smollm2.count(
        [{"role": "user", "content": "Hello world"}]
    )


@pytest.mark.slow
def test_a_long_rendered_prompt_overflows_without_max_tokens(catalog: ModelCatalog) -> None:
    long_doc = "lorem ipsum dolor sit amet " * 2000  # ~10k tokens
    rules = _rules(_chat(None, doc=long_doc), catalog)
    assert "PL004" in rules and "PL006" in rules
    text = {"name": "t", "text": "{{ doc }}", "variables": ["doc"], "sample_variables": {"doc": long_doc}}
    assert "PL004" in _rules({**text, "parameters": {"max_tokens": 10}}, catalog, model=SMOLLM2)
    assert "PL004" not in _rules(
        {**text, "parameters": {"max_tokens": 10}, "sample_variables": {"doc": "x"}}, catalog, model=SMOLLM2
    )


@pytest.mark.slow
def test_engine_max_model_len_caps_the_window(tmp_path: Path) -> None:
    capped = ModelCatalog(Settings(data_dir=tmp_path, engine={"max_model_len": 64}))
    assert "PL004" in _rules(_chat(40), capped)
    assert "over its context window of 64" in _rules(_chat(40), capped)["PL004"]


def test_unknown_remote_and_missing_models_are_warnings_not_crashes(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        local_models=[LocalModelSettings(name="broken", source=str(tmp_path / "nope.gguf"))],
        deployments=[RemoteDeploymentSettings(model="gpt-x", base_url="http://127.0.0.1:9/v1")],
    )
    catalog = ModelCatalog(settings)
    for model, why in (
        ("gpt-x", "remote deployment"),
        ("nobody", "not a local model"),
        ("broken", "could not be read"),
    ):
        rules = _rules(_chat(16, model=model), catalog)
        assert set(rules) == {"PL005"}, rules
        assert why in rules["PL005"]
    assert isinstance(catalog.window("broken"), Unavailable)
    assert "no target model" in _rules(_chat(16, model=None), catalog)["PL005"]


@pytest.mark.slow
def test_missing_sample_value_and_cli_model_override(tmp_path: Path, catalog: ModelCatalog) -> None:
    raw = _chat(16)
    raw["sample_variables"] = {}
    assert "`doc` has no default and no sample value" in _rules(raw, catalog)["PL005"]
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nmodel: gpt-4o\ntext: 'Hi {{ who }}'\nvariables: [{name: who, default: you}]\n"
        "parameters: {max_tokens: 8192}\n"
    )
    cfg = tmp_path / "modelyard.yaml"
    cfg.write_text(f"data_dir: {tmp_path}\n")
    runner = CliRunner()
    assert runner.invoke(lint_app, ["lint", str(path), "-c", str(cfg)]).exit_code == 0  # PL005 only
    result = runner.invoke(lint_app, ["lint", str(path), "-c", str(cfg), "--model", SMOLLM2])
    assert result.exit_code == 1 and "PL004" in result.output


@pytest.mark.slow
def test_gemma_base_model_counts_with_the_gemma_turn_template(catalog: ModelCatalog) -> None:
    gemma = catalog.window("gemma-3-270m")
    assert isinstance(gemma, ModelWindow), gemma
    assert gemma.context_length == 32768
    assert gemma.chat_template is not None and "<start_of_turn>" in gemma.chat_template
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = gemma.tokenizer.apply_chat_template(
        messages, chat_template=gemma.chat_template, add_generation_prompt=True, tokenize=False
    )
    assert text.endswith("<start_of_turn>model\n")
    assert gemma.count(messages) == len(gemma.tokenizer(text, add_special_tokens=False)["input_ids"])
    raw = _chat(9000)
    assert "PL004" not in _rules(raw, catalog, model="gemma-3-270m")
    assert "PL004" in _rules(raw, catalog)  # the prompt's own model, smollm2: 8192 tokens


@pytest.mark.slow
def test_a_gguf_the_server_converted_is_read_from_the_model_cache(
    tmp_path: Path, smollm2: ModelWindow
) -> None:
    """The cache folder (as ``load_model`` leaves it, weights aside) counts exactly as the GGUF does."""
    from modelyard.engine.gguf_convert import _tokenizer_class, hf_config, read_gguf
    from modelyard.engine.loader import _gguf_digest, packaged_model_path

    cache = tmp_path / "models"
    gguf = packaged_model_path(SMOLLM2)
    folder = cache / _gguf_digest(gguf, cache)
    folder.mkdir()
    hf_config(read_gguf(gguf)).save_pretrained(folder)
    _tokenizer_class("llama").from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    (folder / "modelyard.json").write_text("{}")
    cached = ModelCatalog(Settings(data_dir=tmp_path)).window(SMOLLM2)
    assert isinstance(cached, ModelWindow)
    assert Path(cached.tokenizer.name_or_path) == folder
    assert cached.context_length == smollm2.context_length == 8192
    messages = [{"role": "system", "content": "Be brief, café ☕."}, {"role": "user", "content": "Ünïcode?"}]
    assert cached.count(messages) == smollm2.count(messages)
    assert cached.count("plain text ✓") == smollm2.count("plain text ✓")
