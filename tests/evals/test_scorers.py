"""Built-in scorers: each type passes a right answer, fails a wrong one, and rejects a bad spec by field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import InvalidRequest
from modelyard.evals.scorers import BUILTIN_TYPES, ScorerSpecError, build_scorer, default_registry
from modelyard.evals.scorers.text import rouge_l_f1
from modelyard.evals.types import EvalItem, Score, TargetOutput


def item(expected: Any = None) -> EvalItem:
    return EvalItem("q1", [{"role": "user", "content": "?"}], expected)


def out(text: str, **kw: Any) -> TargetOutput:
    return TargetOutput(text=text, latency_s=kw.pop("latency_s", 0.2), **kw)


async def judge(spec: dict[str, Any], expected: Any, text: str, **kw: Any) -> Score:
    return await build_scorer(spec).score(item(expected), out(text, **kw))


async def test_equals_normalises_whitespace_and_optionally_case() -> None:
    assert (await judge({"type": "equals"}, "Paris", "  Paris \n")).passed
    assert not (await judge({"type": "equals"}, "Paris", "paris")).passed
    assert (await judge({"type": "equals", "ignore_case": True}, "Paris", "paris")).passed
    assert not (await judge({"type": "equals", "normalize_whitespace": False}, "Paris", " Paris")).passed
    assert (await judge({"type": "equals"}, ["Rome", "Paris"], "Paris")).passed  # any of a list
    miss = await judge({"type": "equals"}, "Paris", "Lyon")
    assert (miss.score, miss.passed) == (0.0, False) and "Lyon" in (miss.reason or "")


async def test_equals_compares_json_for_structured_expected() -> None:
    assert (await judge({"type": "equals"}, {"a": 1, "b": [2]}, '{"b": [2], "a": 1}')).passed
    assert not (await judge({"type": "equals"}, {"a": 1}, '{"a": 2}')).passed
    assert not (await judge({"type": "equals"}, {"a": 1}, "not json")).passed


async def test_equals_without_expected_fails_with_a_reason() -> None:
    score = await judge({"type": "equals"}, None, "x")
    assert not score.passed and "no expected" in (score.reason or "")


async def test_contains_any_all_and_case() -> None:
    spec = {"type": "contains", "values": ["Paris", "France"]}
    assert (await judge(spec, None, "It is Paris.")).passed
    all_spec = {**spec, "mode": "all"}
    half = await judge(all_spec, None, "It is Paris.")
    assert (half.score, half.passed) == (0.5, False) and "France" in (half.reason or "")
    assert (await judge(all_spec, None, "Paris, France")).passed
    assert not (await judge({"type": "contains"}, "Paris", "PARIS")).passed
    assert (await judge({"type": "contains", "ignore_case": True}, "Paris", "PARIS")).passed  # item expected


async def test_regex_search_and_full() -> None:
    assert (await judge({"type": "regex", "pattern": r"\b19\d\d\b"}, None, "in 1969 it")).passed
    assert not (await judge({"type": "regex", "pattern": r"\d+", "match": "full"}, None, "in 1969")).passed
    assert (await judge({"type": "regex", "pattern": r"\d+", "match": "full"}, None, "1969")).passed


async def test_json_valid_strips_a_code_fence() -> None:
    assert (await judge({"type": "json_valid"}, None, '```json\n{"a": 1}\n```')).passed
    assert not (
        await judge({"type": "json_valid", "strip_code_fence": False}, None, '```\n{"a": 1}\n```')
    ).passed
    assert not (await judge({"type": "json_valid"}, None, "{a: 1}")).passed


async def test_json_schema_names_the_violation() -> None:
    spec = {
        "type": "json_schema",
        "schema": {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]},
    }
    assert (await judge(spec, None, '{"age": 3}')).passed
    bad = await judge(spec, None, '{"age": "three"}')
    assert not bad.passed and "age" in (bad.reason or "")


async def test_levenshtein_similarity() -> None:
    close = await judge({"type": "levenshtein"}, "Washington", "Washingtn")
    assert close.passed and close.score == pytest.approx(0.9)
    assert not (await judge({"type": "levenshtein"}, "Washington", "Berlin")).passed
    assert (
        await judge({"type": "levenshtein", "threshold": 1.0}, "Paris", "paris")
    ).passed  # ignore_case default


def test_rouge_l_matches_the_lcs_definition() -> None:
    # LCS("the cat was found under the bed", "the cat was under the bed") = 6 tokens (Lin 2004 example shape)
    p, r = 6 / 7, 6 / 6
    assert rouge_l_f1("the cat was found under the bed", "the cat was under the bed") == pytest.approx(
        2 * p * r / (p + r)
    )
    assert rouge_l_f1("", "x") == 0.0
    assert rouge_l_f1("Hello, World!", "hello world") == 1.0


async def test_rouge_l_scorer_uses_the_best_expected() -> None:
    score = await judge(
        {"type": "rouge_l"}, ["nothing alike", "the capital is Paris"], "The capital is Paris"
    )
    assert score.passed and score.score == pytest.approx(1.0)


async def test_budget_scorers() -> None:
    assert (await judge({"type": "latency", "max_s": 1.0}, None, "x", latency_s=0.5)).passed
    slow = await judge({"type": "latency", "max_s": 1.0}, None, "x", latency_s=4.0)
    assert not slow.passed and slow.score == pytest.approx(0.25)
    assert (await judge({"type": "tokens", "max": 10}, None, "x", completion_tokens=10)).passed
    assert not (await judge({"type": "tokens", "max": 10}, None, "x", completion_tokens=11)).passed
    assert (await judge({"type": "cost", "max_usd": 0.01}, None, "x", cost_usd=0.001)).passed
    assert not (await judge({"type": "cost", "max_usd": 0.01}, None, "x", cost_usd=0.02)).passed
    assert (await judge({"type": "cost", "max_usd": 0.01}, None, "x")).passed  # unknown cost passes
    assert not (await judge({"type": "cost", "max_usd": 0.01, "missing": "fail"}, None, "x")).passed


async def test_refusal_by_phrase_field_and_expectation() -> None:
    assert (await judge({"type": "refusal"}, None, "Paris is the capital.")).passed
    refused = await judge({"type": "refusal"}, None, "I\u2019m sorry, but I can\u2019t help with that.")
    assert not refused.passed and "phrase" in (refused.reason or "")
    assert (
        await judge({"type": "refusal", "expect": True}, None, "I cannot assist with that request.")
    ).passed
    raw = {"choices": [{"message": {"role": "assistant", "content": None, "refusal": "No."}}]}
    assert not (await judge({"type": "refusal"}, None, "", raw=raw)).passed
    assert not (await judge({"type": "refusal"}, None, "", finish_reason="content_filter")).passed
    custom = {"type": "refusal", "phrases": ["Nope"]}
    assert not (await judge(custom, None, "nope, not today")).passed


async def test_custom_scorer_function_and_class_by_path() -> None:
    fn = {"type": "custom", "path": "eval_docs:word_count_scorer", "params": {"max_words": 2}}
    assert (await judge(fn, None, "two words")).passed
    assert not (await judge(fn, None, "three words here")).passed
    cls = {"type": "custom", "name": "prefix", "path": "eval_docs:StartsWith", "params": {"prefix": "A:"}}
    assert (await judge(cls, None, "A: yes")).passed
    miss = await judge(cls, None, "B: no")
    assert not miss.passed and "A:" in (miss.reason or "")


async def test_custom_scorer_returning_garbage_is_a_broken_scorer() -> None:
    scorer = build_scorer({"type": "custom", "path": "eval_docs:garbage_scorer"})
    with pytest.raises(TypeError, match="returned str"):
        await scorer.score(item(), out("x"))


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        ({"type": "nope"}, "scorers[2].type"),
        ({"name": "x"}, "scorers[2].type"),
        ({"type": "regex"}, "scorers[2].pattern"),
        ({"type": "regex", "pattern": "("}, "scorers[2].pattern"),
        ({"type": "equals", "threshold": 2}, "scorers[2].threshold"),
        ({"type": "equals", "weight": -1}, "scorers[2].weight"),
        ({"type": "equals", "bogus": 1}, "scorers[2].bogus"),
        ({"type": "contains", "mode": "some"}, "scorers[2].mode"),
        ({"type": "contains", "values": []}, "scorers[2].values"),
        ({"type": "json_schema"}, "scorers[2].schema"),
        ({"type": "json_schema", "schema": {"type": "nonsense"}}, "scorers[2].schema"),
        ({"type": "latency"}, "scorers[2].max_s"),
        ({"type": "tokens", "max": 1.5}, "scorers[2].max"),
        ({"type": "custom", "path": "no.such.module:thing"}, "scorers[2].path"),
        ({"type": "custom", "path": "nocolon"}, "scorers[2].path"),
        ({"type": "custom", "path": "builtins:object"}, "scorers[2].path"),
        ({"type": "custom", "path": "eval_docs:StartsWith", "params": {"wrong": 1}}, "scorers[2].params"),
        ({"type": "embedding_similarity", "model": "packaged:nope"}, "scorers[2].model"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, Any], param: str) -> None:
    with pytest.raises(ScorerSpecError) as caught:
        build_scorer(spec, where="scorers[2]")
    assert isinstance(caught.value, InvalidRequest)
    assert caught.value.param == param and param in caught.value.message


def test_build_all_rejects_duplicate_names_and_sets_defaults() -> None:
    registry = default_registry()
    scorers = registry.build_all([{"type": "equals"}, {"type": "equals", "name": "exact2", "weight": 2}])
    assert [(s.name, s.threshold, s.weight) for s in scorers] == [("equals", 1.0, 1.0), ("exact2", 1.0, 2.0)]
    assert build_scorer({"type": "levenshtein"}).threshold == 0.8
    with pytest.raises(ScorerSpecError) as caught:
        registry.build_all([{"type": "equals"}, {"type": "equals"}])
    assert caught.value.param == "scorers[1].name"
    with pytest.raises(ScorerSpecError):
        registry.build_all([])


async def test_registry_is_extensible_per_instance() -> None:
    class Always:
        def __init__(self, name: str, threshold: float, weight: float) -> None:
            self.name, self.threshold, self.weight = name, threshold, weight

        async def score(self, item: EvalItem, output: TargetOutput) -> Score:
            return Score(1.0, True, "scripted")

    registry = default_registry()
    assert set(BUILTIN_TYPES) == set(registry.types)
    registry.register_scorer("judge", lambda r: Always(*r.common("judge", 0.5)))
    scorer = registry.build({"type": "judge", "name": "j"})
    assert (await scorer.score(item(), out("x"))).reason == "scripted"
    with pytest.raises(ValueError):
        registry.register_scorer("judge", lambda r: Always(*r.common("judge", 0.5)))
    with pytest.raises(ScorerSpecError):
        default_registry().build({"type": "judge"})  # another registry does not see it


def test_the_docs_describe_every_builtin_scorer() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "evals-reports.md").read_text()
    for type_name in BUILTIN_TYPES:
        assert f"| `{type_name}` |" in doc, type_name
