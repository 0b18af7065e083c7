"""``POST /v1/chat/completions`` (streamed and not)."""

from starlette.routing import Route

from modelyard.gateway.backends.base import Endpoint
from modelyard.http.openai.common import post_handler
from modelyard.protocol.openai import ChatCompletionRequest

routes = [Route("/v1/chat/completions", post_handler(Endpoint.CHAT, ChatCompletionRequest), methods=["POST"])]
