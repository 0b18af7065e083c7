"""The work queue between gateways and engine workers (scale-out mode).

``base`` holds the :class:`~modelyard.queue.base.WorkQueue` seam and the plain data that crosses it;
``memory`` and ``redis_streams`` implement it; ``worker`` is the process behind ``modelyard worker``.
"""
