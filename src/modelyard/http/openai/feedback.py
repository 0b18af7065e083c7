"""``POST /v1/feedback``: explicit feedback on a response — ``{"response_id", "thumbs": "up"|"down"}``
or ``{"response_id", "score": 1..5}``, with an optional ``comment`` (at most 2,000 characters).

Accepted only for a response of the caller's own tenant that an experiment exposed (404 otherwise,
in the same words whether it does not exist or is another tenant's; since exposures are written in
batches, a response id not found yet is retried for about one writer period before the 404); the score is stored scaled to
[0, 1] (down 0, up 1; score s → (s - 1) / 4) beside the response's request id, so reports join it
to the exposure and the request log. Answers 201 with the feedback record.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelyard.errors import NotFound
from modelyard.http.openai.common import parse_body
from modelyard.tenancy.records import ANONYMOUS

FLUSH_WAITS = 4  # a response's exposure reaches the store within one writer period (0.5 s)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(min_length=1, max_length=256)
    thumbs: Literal["up", "down"] | None = None
    score: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one(self) -> FeedbackRequest:
        if (self.thumbs is None) == (self.score is None):
            raise ValueError("give either `thumbs` (up or down) or `score` (1 to 5)")
        return self


async def create_feedback(request: Request) -> JSONResponse:
    _, fb = await parse_body(request, FeedbackRequest)  # a ValidationError is a 400 naming the field
    book = getattr(request.state, "experiment_book", None)
    if book is None:
        raise NotFound("Experiments are not configured on this server.")
    p = getattr(request.state, "principal", None) or ANONYMOUS
    raw = fb.thumbs if fb.thumbs is not None else str(fb.score)
    score = (1.0 if fb.thumbs == "up" else 0.0) if fb.thumbs is not None else (float(fb.score or 1) - 1) / 4

    def add() -> dict[str, Any]:
        return book.store.add_feedback(  # type: ignore[no-any-return]
            fb.response_id, tenant=p.tenant_id, raw=raw, score=score, comment=fb.comment, actor=p.actor
        )

    layer = getattr(request.state, "experiment_layer", None)
    for attempt in range(FLUSH_WAITS + 1):
        try:
            return JSONResponse(await run_in_threadpool(add), status_code=201)
        except NotFound:
            if attempt == FLUSH_WAITS:
                raise
            if attempt == 0 and layer is not None and layer.writer.pending:
                await run_in_threadpool(layer.writer.flush)  # our own exposure may not be written yet
            else:  # another gateway's writer flushes within its flush_s
                await asyncio.sleep(layer.writer.flush_s / 2 if layer is not None else 0.25)
    raise AssertionError("unreachable")


routes = [Route("/v1/feedback", create_feedback, methods=["POST"])]
