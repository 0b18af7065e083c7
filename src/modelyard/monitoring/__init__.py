"""Observability: Prometheus metrics, OpenTelemetry traces and the request log.

``monitor.Monitor`` owns them for one app; ``observer.Observation`` follows one request (the
pipeline and the SSE / WebSocket paths notify it); ``metrics`` and ``tracing`` hold the metric
families and the exporters; ``requestlog`` stores prompts and responses; ``cli`` has
``modelyard logs search`` and ``modelyard top``.
"""
