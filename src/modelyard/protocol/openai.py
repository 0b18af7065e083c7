"""Pydantic wire models of the OpenAI API (``components.schemas`` of the OpenAI OpenAPI description).

Requests ignore unknown fields, as OpenAI does. Only the fields modelyard reads or returns are
modelled; the names and shapes follow the reference (``CreateChatCompletionRequest``,
``CreateChatCompletionResponse``, ``CreateChatCompletionStreamResponse``, ``CreateCompletionRequest``,
``CreateEmbeddingRequest``, ``Model``, ``ListModelsResponse``, ``Error``). No logic lives here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelyard.errors import InvalidRequest


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- requests ---------------------------------------------------------------------------------


class ContentPart(_Request):
    type: str
    text: str | None = None


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text; content parts other than ``text`` are rejected upstream of this."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(_Request):
    include_usage: bool | None = None


class PromptReference(_Request):
    """A registry prompt to render (the shape of OpenAI's prompt reference): ``version`` is digits (a
    version number) or a label; absent means label ``production``, else the latest version."""

    id: str = Field(min_length=1, max_length=128)
    version: str | int | None = None
    variables: dict[str, Any] | None = None


def _required_unless_prompt(data: Any, names: tuple[str, ...]) -> Any:
    """``names`` may be left out only when ``prompt`` is a prompt reference (the prompt layer fills
    them); otherwise a missing one is the same 400 as a missing required field."""
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        try:  # validated here so that an error names `prompt.<field>`, not a union member
            ref = PromptReference.model_validate(data["prompt"])
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in ("prompt", *err["loc"]))
            message = (
                f"Missing required parameter: '{where}'."
                if err["type"] == "missing"
                else f"Invalid value for '{where}': {err['msg']}."
            )
            raise InvalidRequest(message, param=where, code="invalid_value") from None
        kept = {k: v for k, v in data.items() if not (k in names and v in ("", []))}
        return {**kept, "prompt": ref}
    if isinstance(data, dict):
        for name in names:
            if name not in data:
                raise InvalidRequest(
                    f"Missing required parameter: '{name}'.", param=name, code="invalid_value"
                )
    return data


class _SamplingFields(_Request):
    # "" (left out) only with a prompt reference: the prompt version's default model fills it.
    model: str = Field(default="", min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    # Not in OpenAI's API; vLLM's extension fields, which the built-in engine supports too.
    top_k: int | None = Field(default=None, ge=-1, description="-1 or 0: off")
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=2)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(default_factory=list, min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # modelyard's extension: rendered (and removed) by the prompt layer before the pipeline.
    prompt: PromptReference | None = None

    @model_validator(mode="before")
    @classmethod
    def _prompt_fills(cls, data: Any) -> Any:
        return _required_unless_prompt(data, ("model", "messages"))

    def effective_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_SamplingFields):
    # A prompt reference (modelyard's extension) is rendered to text by the prompt layer.
    prompt: PromptReference | str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = False
    suffix: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _prompt_fills(cls, data: Any) -> Any:
        return _required_unless_prompt(data, ("model",))


class EmbeddingRequest(_Request):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


# --- responses --------------------------------------------------------------------------------


class PromptTokensDetails(_Wire):
    cached_tokens: int = 0


class CompletionUsage(_Wire):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class TopLogprob(_Wire):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobContent(_Wire):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(_Wire):
    content: list[TokenLogprobContent] | None = None
    refusal: list[TokenLogprobContent] | None = None


class AssistantMessage(_Wire):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None


class ChatChoice(_Wire):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(_Wire):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


class ChunkDelta(_Wire):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(_Wire):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(_Wire):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


class CompletionLogprobs(_Wire):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] | None = None
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(_Wire):
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class Completion(_Wire):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


class Embedding(_Wire):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(_Wire):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(_Wire):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class Model(_Wire):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # modelyard's extension: the model version's defaults for sampling fields a request leaves unset.
    sampling_defaults: dict[str, Any] = Field(default_factory=dict)


class ListModelsResponse(_Wire):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorBody(_Wire):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(_Wire):
    error: ErrorBody


JsonDict = dict[str, Any]
