"""``POST /v1/embeddings`` (``encoding_format`` float or base64; the openai SDK asks for base64)."""

from starlette.routing import Route

from modelyard.gateway.backends.base import Endpoint
from modelyard.http.openai.common import post_handler
from modelyard.protocol.openai import EmbeddingRequest

routes = [Route("/v1/embeddings", post_handler(Endpoint.EMBEDDINGS, EmbeddingRequest), methods=["POST"])]
