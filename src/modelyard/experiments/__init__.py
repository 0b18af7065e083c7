"""Experiments: A/B tests on a route (a model name or a prompt id) with deterministic sticky
assignment, exposures and feedback in the metadata store, and statistics that end in a decision.

``records`` (plain data and validation), ``assignment`` (hashing and the bucket layout), ``models`` +
``store`` (rows and the store), ``layer`` (layer 2 of a request's path), ``stats`` and ``report``.
See ``docs/experiments.md``.
"""
