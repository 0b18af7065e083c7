"""The request log: every prompt and response (or a sample) with its metadata, stored off the hot path.

``records`` holds the stable schema (the ``request_log`` table, schema version 1), ``redaction``
scrubs text before it is stored, ``writer`` buffers and batches inserts, ``query`` searches.
"""
