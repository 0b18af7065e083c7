"""Scorers that compare the answer text with the expected text: equals, contains, regex, Levenshtein, ROUGE-L.

An item's ``expected`` is a string, a list of strings (any of them: the best match counts) or a JSON
value (``equals`` then compares parsed JSON). A spec's own ``expected`` overrides the item's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from rapidfuzz.distance import LCSseq, Levenshtein

from modelyard.evals.scorers.base import SpecReader, expected_texts
from modelyard.evals.types import EvalItem, Score, TargetOutput

_WS = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _normalise(text: str, *, ignore_case: bool, whitespace: bool) -> str:
    if whitespace:
        text = _WS.sub(" ", text).strip()
    return text.casefold() if ignore_case else text


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


@dataclass(slots=True)
class EqualsScorer:
    """1 when the answer equals an expected value (after the chosen normalisation), else 0.

    A JSON (non-string) expected value is compared with the answer parsed as JSON.
    """

    name: str
    threshold: float
    weight: float
    ignore_case: bool
    normalize_whitespace: bool
    expected: Any

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        expected = item.expected if self.expected is None else self.expected
        if expected is None:
            return Score(0.0, False, "the item has no expected value")
        if not isinstance(expected, str) and not (
            isinstance(expected, list) and all(isinstance(v, str) for v in expected)
        ):
            try:
                parsed = json.loads(output.text)
            except ValueError:
                return Score(0.0, False, "the answer is not JSON; expected a JSON value")
            ok = parsed == expected
            return Score(float(ok), ok, None if ok else "the JSON answer differs from the expected value")
        answer = _normalise(output.text, ignore_case=self.ignore_case, whitespace=self.normalize_whitespace)
        texts = expected_texts(item, self.expected)
        for text in texts:
            if answer == _normalise(text, ignore_case=self.ignore_case, whitespace=self.normalize_whitespace):
                return Score(1.0, True, None)
        return Score(0.0, False, f"{_short(output.text)} equals none of {len(texts)} expected value(s)")


@dataclass(slots=True)
class ContainsScorer:
    """``any``: 1 when the answer contains one of the values; ``all``: the share of values it contains."""

    name: str
    threshold: float
    weight: float
    values: list[str] | None
    mode: str
    ignore_case: bool

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        values = self.values if self.values is not None else expected_texts(item)
        if not values:
            return Score(0.0, False, "no values to look for (no 'values' and no expected value)")
        answer = output.text.casefold() if self.ignore_case else output.text
        found = [v for v in values if (v.casefold() if self.ignore_case else v) in answer]
        if self.mode == "any":
            value = 1.0 if found else 0.0
        else:
            value = len(found) / len(values)
        passed = value >= self.threshold
        missing = [v for v in values if v not in found]
        reason = None if passed else f"missing {', '.join(map(_short, missing[:5]))}"
        return Score(value, passed, reason)


@dataclass(slots=True)
class RegexScorer:
    """1 when the pattern matches: anywhere (``match: search``) or the whole answer (``match: full``)."""

    name: str
    threshold: float
    weight: float
    pattern: re.Pattern[str]
    full: bool

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        hit = self.pattern.fullmatch(output.text) if self.full else self.pattern.search(output.text)
        ok = hit is not None
        return Score(float(ok), ok, None if ok else f"/{self.pattern.pattern}/ does not match")


@dataclass(slots=True)
class LevenshteinScorer:
    """Normalised Levenshtein similarity ``1 - distance / max(len)`` to the closest expected text."""

    name: str
    threshold: float
    weight: float
    ignore_case: bool
    expected: Any

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        texts = expected_texts(item, self.expected)
        if not texts:
            return Score(0.0, False, "the item has no expected value")
        answer = _normalise(output.text, ignore_case=self.ignore_case, whitespace=True)
        best = max(
            Levenshtein.normalized_similarity(
                answer, _normalise(t, ignore_case=self.ignore_case, whitespace=True)
            )
            for t in texts
        )
        passed = best >= self.threshold
        return Score(best, passed, None if passed else f"similarity {best:.3f} < {self.threshold}")


def rouge_tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens, the tokenisation of Google's ``rouge-score`` (no stemming)."""
    return [t for t in _NON_ALNUM.split(text.lower()) if t]


def rouge_l_f1(candidate: str, reference: str) -> float:
    """ROUGE-L F-measure with beta = 1 (Lin 2004, "ROUGE: A Package for Automatic Evaluation of
    Summaries", section 3.1): ``R = LCS/len(ref)``, ``P = LCS/len(cand)``, ``F = 2PR / (P + R)``.
    """
    cand, ref = rouge_tokens(candidate), rouge_tokens(reference)
    if not cand or not ref:
        return 0.0
    lcs = LCSseq.similarity(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


@dataclass(slots=True)
class RougeLScorer:
    """ROUGE-L F1 against the best-matching expected text."""

    name: str
    threshold: float
    weight: float
    expected: Any

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        texts = expected_texts(item, self.expected)
        if not texts:
            return Score(0.0, False, "the item has no expected value")
        best = max(rouge_l_f1(output.text, t) for t in texts)
        passed = best >= self.threshold
        return Score(best, passed, None if passed else f"ROUGE-L F1 {best:.3f} < {self.threshold}")


def build_equals(r: SpecReader) -> EqualsScorer:
    name, threshold, weight = r.common("equals", 1.0)
    return EqualsScorer(
        name,
        threshold,
        weight,
        r.boolean("ignore_case", False),
        r.boolean("normalize_whitespace", True),
        r.raw("expected"),
    )


def build_contains(r: SpecReader) -> ContainsScorer:
    name, threshold, weight = r.common("contains", 1.0)
    return ContainsScorer(
        name,
        threshold,
        weight,
        r.strings("values"),
        r.choice("mode", ("any", "all"), "any"),
        r.boolean("ignore_case", False),
    )


def build_regex(r: SpecReader) -> RegexScorer:
    name, threshold, weight = r.common("regex", 1.0)
    source = r.string("pattern", required=True)
    assert source is not None
    flags = re.IGNORECASE if r.boolean("ignore_case", False) else 0
    try:
        pattern = re.compile(source, flags | re.DOTALL)
    except re.error as exc:
        raise r.fail("pattern", f"does not compile: {exc}") from exc
    return RegexScorer(
        name, threshold, weight, pattern, r.choice("match", ("search", "full"), "search") == "full"
    )


def build_levenshtein(r: SpecReader) -> LevenshteinScorer:
    name, threshold, weight = r.common("levenshtein", 0.8)
    return LevenshteinScorer(name, threshold, weight, r.boolean("ignore_case", True), r.raw("expected"))


def build_rouge_l(r: SpecReader) -> RougeLScorer:
    name, threshold, weight = r.common("rouge_l", 0.5)
    return RougeLScorer(name, threshold, weight, r.raw("expected"))
