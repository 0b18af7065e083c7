"""LLM-as-judge: a served model grades an answer against a rubric prompt and returns a JSON verdict.

The judge is independent of the runner (experiments and guardrails reuse it): :class:`Judge` needs
only an ``openai.AsyncOpenAI`` client (any served model, the gateway in process, or a separate
``base_url``), a model name and a rubric :class:`~modelyard.registry.prompt_spec.PromptSpec`.
The rubric receives the variables ``question``, ``answer``, ``expected``, ``context`` and
``criteria`` (strings) and must ask for one JSON object, either ``{"score": 1..5, "reason"}`` or
``{"verdict": "pass" | "fail", "reason"}`` (``"pass": true`` also reads as pass).

:func:`parse_verdict` is forgiving: the first JSON object anywhere in the reply, else a
``score: N`` / ``N/5`` pattern, else a lone PASS / FAIL word; a reply it cannot read scores 0 with
the reply quoted as the reason. Scores map to [0, 1]: 1..5 -> (s - 1) / 4, pass -> 1, fail -> 0.
Each of ``repeats`` calls uses ``temperature`` (default 0) and ``seed = i``; the score is their mean
(judges vary run to run), and the reason is the first call's.

As a scorer (type ``judge``, built by :func:`build_judge` from a suite spec)::

    {type: judge, model: smollm2-135m-instruct, rubric: judge-rubric, judge_repeats: 3,
     threshold: 0.75, criteria: "Answer with the city only", base_url?: URL, api_key_env?: VAR}

Rubric prompts come from a :class:`PromptSource`; :class:`PackagedPrompts` reads the YAML files
packaged in ``modelyard/evals/prompts/`` (``judge-rubric``); the lead wires a registry-backed source.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import openai

from modelyard.errors import NotFound
from modelyard.evals.types import EvalItem, Score, TargetOutput
from modelyard.registry.prompt_spec import PromptSpec, compile_spec, load_prompt_file, render

PACKAGED = Path(__file__).parent / "prompts"
DEFAULT_RUBRIC = "judge-rubric"
_SCORE_RE = re.compile(r"(?:score\W{0,4}|\b)([1-5])(?:\s*/\s*5|\b)", re.IGNORECASE)
_WORD_RE = re.compile(r"\b(PASS|FAIL)\b", re.IGNORECASE)


class PromptSource(Protocol):
    """Where rubric prompts come from: ``get(ref)`` returns the spec or raises :class:`NotFound`."""

    def get(self, ref: str) -> PromptSpec: ...


@dataclass(slots=True)
class PackagedPrompts:
    """Prompt files under ``folder`` (default: the packaged ones), by name: ``NAME`` = ``NAME.yaml``."""

    folder: Path = PACKAGED

    def get(self, ref: str) -> PromptSpec:
        name = ref.split("@", 1)[0].split(":", 1)[0]
        path = self.folder / f"{name}.yaml"
        if not name.replace("-", "").replace("_", "").isalnum() or not path.is_file():
            raise NotFound(f"no rubric prompt {ref!r}", param="rubric")
        spec = load_prompt_file(path)
        compile_spec(spec)
        return spec


@dataclass(slots=True)
class RegistryPrompts:
    """Rubric prompts from the prompt registry as ``tenant`` sees them: ``NAME`` (label ``production``,
    else the latest version), ``NAME@label`` or ``NAME:3``. A name the registry does not hold falls back
    to ``fallback`` (the packaged rubrics), so the default rubric works before anyone pushes one."""

    prompts: Any  # modelyard.registry.prompts.PromptRegistry
    tenant: str | None = None
    fallback: PromptSource = field(default_factory=PackagedPrompts)

    def get(self, ref: str) -> PromptSpec:
        from modelyard.registry.prompt_records import PromptNotFound

        name, version = ref, None
        if "@" in ref:
            name, version = ref.split("@", 1)
        elif ":" in ref:
            name, version = ref.split(":", 1)
        try:
            info = self.prompts.find(name, self.tenant)
        except PromptNotFound:
            return self.fallback.get(ref)
        try:
            spec = info.select(version, param="rubric").spec()
        except PromptNotFound as exc:
            raise NotFound(exc.message, param="rubric") from None
        compile_spec(spec)
        return spec  # type: ignore[no-any-return]


@dataclass(slots=True, frozen=True)
class Verdict:
    score: float  # in [0, 1]
    parsed: bool
    reason: str


def _first_json_object(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    while start != -1:
        depth = 0
        for end in range(start, len(text)):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        value = json.loads(text[start : end + 1])
                    except ValueError:
                        break
                    if isinstance(value, dict):
                        return value
                    break
        start = text.find("{", start + 1)
    return None


def _from_object(obj: dict[str, Any]) -> float | None:
    score = obj.get("score")
    if isinstance(score, str) and score.strip().isdigit():
        score = int(score.strip())
    if isinstance(score, int | float) and not isinstance(score, bool) and 1 <= score <= 5:
        return (float(score) - 1.0) / 4.0
    verdict = obj.get("verdict", obj.get("pass", obj.get("result")))
    if isinstance(verdict, bool):
        return 1.0 if verdict else 0.0
    if isinstance(verdict, str) and verdict.strip().lower() in (
        "pass",
        "fail",
        "yes",
        "no",
        "correct",
        "incorrect",
    ):
        return 1.0 if verdict.strip().lower() in ("pass", "yes", "correct") else 0.0
    return None


def parse_verdict(text: str) -> Verdict:
    """Read a judge's reply (see the module docstring); never raises."""
    obj = _first_json_object(text)
    if obj is not None:
        value = _from_object(obj)
        if value is not None:
            return Verdict(value, True, str(obj.get("reason") or "").strip()[:500])
    m = _SCORE_RE.search(text)
    if m:
        return Verdict((int(m.group(1)) - 1) / 4.0, True, text.strip()[:500])
    w = _WORD_RE.search(text)
    if w:
        return Verdict(1.0 if w.group(1).upper() == "PASS" else 0.0, True, text.strip()[:500])
    return Verdict(0.0, False, f"unparseable judge reply: {text.strip()[:300]!r}")


def question_of(item: EvalItem) -> str:
    if isinstance(item.input, list):
        users = [m.get("content") for m in item.input if m.get("role") == "user"]
        last = users[-1] if users else item.input[-1].get("content")
        return last if isinstance(last, str) else json.dumps(last)
    return json.dumps(item.input, ensure_ascii=False, sort_keys=True)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " | ".join(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass(slots=True)
class Judge:
    """Grades one answer; ``client`` is called lazily so a runner can bind it after start-up."""

    client: Callable[[], openai.AsyncOpenAI]
    model: str
    rubric: PromptSpec
    repeats: int = 1
    temperature: float = 0.0
    max_tokens: int | None = None

    async def grade(self, item: EvalItem, answer: str, criteria: str = "") -> Verdict:
        variables = {
            "question": question_of(item),
            "answer": answer,
            "expected": _text(item.expected),
            "context": _text(item.context),
            "criteria": criteria,
        }
        declared = {v.name for v in self.rubric.variables}
        rendered = render(self.rubric, {k: v for k, v in variables.items() if k in declared})
        params = dict(self.rubric.parameters)
        params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        verdicts: list[Verdict] = []
        client = self.client()
        for i in range(self.repeats):
            params["seed"] = i
            if isinstance(rendered, str):
                resp: Any = await client.completions.create(model=self.model, prompt=rendered, **params)
                reply = resp.choices[0].text if resp.choices else ""
            else:
                resp = await client.chat.completions.create(model=self.model, messages=rendered, **params)  # type: ignore[arg-type]
                reply = (resp.choices[0].message.content or "") if resp.choices else ""
            verdicts.append(parse_verdict(reply))
        mean = sum(v.score for v in verdicts) / len(verdicts)
        parsed = sum(v.parsed for v in verdicts)
        reason = (
            verdicts[0].reason
            if parsed == len(verdicts)
            else f"{parsed}/{len(verdicts)} parsed; {verdicts[0].reason}"
        )
        return Verdict(mean, parsed > 0, reason)


@dataclass(slots=True)
class JudgeScorer:
    """The ``judge`` scorer: :class:`Judge` on the target's answer (a judge API error fails the run)."""

    name: str
    threshold: float
    weight: float
    judge: Judge
    criteria: str = ""

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        v = await self.judge.grade(item, output.text, self.criteria)
        return Score(v.score, v.score >= self.threshold, v.reason)


def build_judge(
    reader: Any, *, default_client: Callable[[], openai.AsyncOpenAI], prompts: PromptSource | None = None
) -> JudgeScorer:
    """Factory for ``ScorerRegistry.register_scorer("judge", partial(build_judge, default_client=...))``."""
    name, threshold, weight = reader.common("judge", 0.75)
    model = reader.string("model", required=True)
    rubric_ref = reader.string("rubric", DEFAULT_RUBRIC)
    repeats = int(reader.number("judge_repeats", 1, minimum=1))
    temperature = float(reader.number("temperature", 0.0, minimum=0.0))
    max_tokens = reader.number("max_tokens", None, minimum=1)
    criteria = reader.string("criteria", "") or ""
    base_url = reader.string("base_url")
    key_env = reader.string("api_key_env")
    try:
        rubric = (prompts or PackagedPrompts()).get(rubric_ref)
    except NotFound as exc:
        raise reader.fail("rubric", exc.message) from None
    except Exception as exc:  # a rubric that does not parse
        raise reader.fail("rubric", str(getattr(exc, "message", exc))) from None
    client = default_client
    if base_url is not None:
        if key_env is not None and key_env not in os.environ:
            raise reader.fail("api_key_env", f"${key_env} is not set")
        key = os.environ.get(key_env) if key_env else None
        own = openai.AsyncOpenAI(base_url=base_url, api_key=key or "none")

        def client() -> openai.AsyncOpenAI:
            return own

    judge = Judge(client, model or "", rubric, repeats, temperature, int(max_tokens) if max_tokens else None)
    return JudgeScorer(name, threshold, weight, judge, criteria)
