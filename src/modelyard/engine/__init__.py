"""modelyard's built-in inference engine: continuous batching over a paged KV cache.

Layout follows a request's path through one engine step (schedule -> execute -> update):
``request`` (plain data in and out), ``scheduler`` + ``kv_cache`` (what runs this step),
``model_runner`` (builds a :class:`ForwardBatch`, runs the model, samples), ``models/``
(compact PyTorch models), ``core`` (the synchronous step loop) and ``async_engine``
(the asyncio face, with the loop on its own thread).
"""
