"""``POST /v1/completions`` (legacy text completions, streamed and not)."""

from starlette.routing import Route

from modelyard.gateway.backends.base import Endpoint
from modelyard.http.openai.common import post_handler
from modelyard.protocol.openai import CompletionRequest

routes = [Route("/v1/completions", post_handler(Endpoint.COMPLETIONS, CompletionRequest), methods=["POST"])]
