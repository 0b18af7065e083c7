"""Wire models of the admin API (``/admin/models``): pydantic at the HTTP edge only, no logic.

Requests ignore unknown fields (as the OpenAI API does); the registry validates values and limits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RegisterModelRequest(_Request):
    """``POST /admin/models``: register a model (versions are added separately)."""

    name: str
    description: str = ""
    is_base_model: bool = False
    owner: str | None = None


class CreateVersionRequest(_Request):
    """``POST /admin/models/{name}/versions``: add the next immutable version.

    ``artifact_uri`` is a path on the server (file or folder; its SHA-256 is computed unless
    ``digest`` is given) or a remote reference such as ``openai_compat://<deployment>``.
    """

    artifact_uri: str
    digest: str | None = None
    architecture: str
    tokenizer: str | None = None
    context_length: int = Field(strict=True)
    quantization: str | None = None
    serving_params: dict[str, Any] | None = None


class SetAliasRequest(_Request):
    """``PUT /admin/models/{name}/aliases/{alias}``: point the alias at a version."""

    version: int = Field(strict=True)


class SetPricesRequest(_Request):
    """``PUT /admin/models/{name}/prices``: prices per 1000 tokens (finite, from 0; the registry checks)."""

    prompt_per_1k: float
    completion_per_1k: float


class SetDefaultsRequest(BaseModel):
    """``PUT /admin/models/{name}/versions/{version}/defaults``: the version's sampling defaults.

    Unknown fields are refused (a misspelt default would otherwise silently do nothing); the registry
    checks the ranges. The body replaces the earlier defaults; ``{}`` clears them."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    stop: str | list[str] | None = None


class AdapterFromRegistryRequest(_Request):
    """``POST /admin/adapters/from-registry``: register a registry artifact (``NAME:VERSION``, a PEFT
    LoRA folder) as a tenant's adapter ``<base_model>:<name>``."""

    tenant: str | None = Field(default=None, description="Owner (default: the caller's tenant).")
    base_model: str
    name: str
    artifact: str = Field(description="The registry version holding the adapter, as `NAME:VERSION`.")


class ModelPrices(BaseModel):
    prompt_per_1k: float
    completion_per_1k: float


class ModelVersion(BaseModel):
    object: Literal["model.version"] = "model.version"
    model: str
    version: int
    artifact_uri: str
    digest: str | None
    architecture: str
    tokenizer: str | None
    context_length: int
    quantization: str | None
    serving_params: dict[str, Any]
    aliases: list[str]
    created_at: datetime
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="The registry's sampling defaults (the overrides over the artifact's); the settings' "
        "defaults of a local model fill the fields left out.",
    )
    artifact_defaults: dict[str, Any] = Field(default_factory=dict)
    default_overrides: dict[str, Any] = Field(default_factory=dict)


class RegisteredModel(BaseModel):
    object: Literal["registered_model"] = "registered_model"
    name: str
    description: str
    is_base_model: bool
    owner: str | None
    created_at: datetime
    aliases: dict[str, int]
    versions: list[ModelVersion]
    prices: ModelPrices | None = None


class RegisteredModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RegisteredModel]


class ModelAlias(BaseModel):
    object: Literal["model.alias"] = "model.alias"
    model: str
    alias: str
    version: int


class DeletedModelAlias(BaseModel):
    object: Literal["model.alias"] = "model.alias"
    model: str
    alias: str
    deleted: bool = True
