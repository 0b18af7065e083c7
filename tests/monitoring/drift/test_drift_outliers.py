"""Outlier signals: length fences, odd characters, and (slow: lingua's models) languages."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.monitoring.drift.outliers import LanguageDetector, LengthFence, odd_characters


def test_a_50x_long_prompt_is_long_and_ordinary_ones_are_not() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.integers(12, 40, size=500)
    fence = LengthFence.of(baseline)
    assert fence is not None
    assert fence.is_long(50 * float(np.median(baseline)))
    ordinary = rng.integers(12, 40, size=500)
    assert sum(fence.is_long(float(n)) for n in ordinary) == 0


def test_constant_baselines_and_tiny_baselines() -> None:
    fence = LengthFence.of([20] * 100)
    assert fence is not None and not fence.is_long(20) and fence.is_long(1000)
    assert LengthFence.of([5]) is None


def test_invisible_and_mixed_script_characters() -> None:
    assert odd_characters("pay\u200bpal login")  # zero-width space
    assert odd_characters("reverse \u202eof text")  # bidi override
    assert odd_characters("p\u0430ypal")  # Cyrillic a inside a Latin word
    assert not odd_characters("Привет, как дела? hello\tthere\n")
    assert not odd_characters("Crème brûlée, naïve café")


@pytest.mark.slow
def test_lingua_tells_french_from_english() -> None:
    detector = LanguageDetector(["en", "fr", "de", "es"])
    assert detector.detect("Bonjour, pouvez-vous m'aider à annuler ma commande de demain ?") == "fr"
    assert detector.detect("Hello, can you help me cancel tomorrow's order?") == "en"
    assert detector.detect("12345 !!!") is None
    with pytest.raises(ValueError, match="unknown language code"):
        LanguageDetector(["en", "xx"]).detect("hello there")


def test_prompts_far_from_every_baseline_neighbour() -> None:
    from drift_stream import BEFORE, HashingEmbedder, window
    from modelyard.monitoring.drift.outliers import far_from_baseline

    rng = np.random.default_rng(3)
    emb = HashingEmbedder()
    baseline = emb.embed(window(600, BEFORE, rng))
    same = emb.embed(window(300, BEFORE, rng))
    odd = emb.embed(["Quantum chromodynamics lattice gauge simulations of gluon plasma viscosity"])
    assert far_from_baseline(baseline, odd).tolist() == [True]
    assert far_from_baseline(baseline, same).mean() < 0.05
    assert not far_from_baseline(baseline[:5], odd).any()  # too small a baseline flags nothing
