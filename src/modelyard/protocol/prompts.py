"""Wire models of the prompt registry's admin API (``/admin/prompts``).

A push body is the prompt file's fields (validated by :func:`~modelyard.registry.prompt_spec.spec_from_dict`,
not here, so the one parser names the bad field) plus ``commit_message``, ``labels`` and ``tenant``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SetPromptLabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The version the label points at.")
    protected: bool | None = Field(
        default=None, description="Protect (only system admins move it) or unprotect; absent keeps it."
    )
