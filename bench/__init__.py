"""Benchmarks of modelyard: ``python -m bench.engine`` (the inference engine) and ``bench.gateway``."""
