"""Prompt drift monitoring (issue 13): sampled prompt embeddings from the request log, fingerprints and
templates, drift methods, outliers, monitors and their runs.

The stages, in the order a prompt meets them:

- :mod:`.fingerprints` — the prompt's text, its canonical form and hash;
- :mod:`.templates` — Drain-style template mining (state persisted in the store);
- :mod:`.outliers` — per-prompt signals (tokens, language, invisible or mixed-script characters);
- :mod:`.consumer` — the background consumer: request-log rows → sample → embed → store;
- :mod:`.methods` — drift statistics on two sets of embeddings;
- :mod:`.monitors` — a monitor's definition and its evaluation into ``drift`` / ``no_drift`` /
  ``insufficient_data``;
- :mod:`.store` / :mod:`.models` — the tables; :mod:`.tasks` — the periodic tasks;
- :mod:`.metrics`, :mod:`.report`, :mod:`.cli` — gauges, the report and ``modelyard drift``.

Heavy imports (scikit-learn, lingua, the embedder, matplotlib) happen inside functions, so that
``modelyard serve`` does not pay for them at start-up.
"""
