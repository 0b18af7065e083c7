"""Building the configured queue and the gateway's queued backends from :class:`Settings`."""

from __future__ import annotations

from modelyard.gateway.backends.queued import QueuedBackend
from modelyard.queue.redis_streams import RedisStreamsQueue
from modelyard.settings import QueueSettings, Settings


def redis_queue(q: QueueSettings) -> RedisStreamsQueue:
    return RedisStreamsQueue(
        q.redis_url,
        key_prefix=q.key_prefix,
        max_queued=q.max_queued,
        retry_after_s=q.retry_after_s,
        reply_ttl_s=q.reply_ttl_s,
        worker_ttl_s=q.worker_ttl_s,
        socket_timeout_s=q.redis_socket_timeout_s,
        connect_timeout_s=q.redis_connect_timeout_s,
        retries=q.redis_retries,
    )


def queued_backends(settings: Settings) -> list[QueuedBackend]:
    """One queued backend per local model: the gateway enqueues, ``modelyard worker`` serves."""
    return [QueuedBackend(m.name, redis_queue(settings.queue), settings.queue) for m in settings.local_models]
