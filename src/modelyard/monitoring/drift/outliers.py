"""Outlier signals of single prompts: length in tokens against the baseline, a language outside the
monitor's expected set, invisible or mixed-script characters.

- Length: a prompt is long when its robust z-score ``0.6745 (x - median) / MAD`` exceeds 3.5
  (Iglewicz and Hoaglin, "How to Detect and Handle Outliers", 1993) or it lies beyond Tukey's far-out
  fence ``Q3 + 3 IQR`` (Tukey, "Exploratory Data Analysis", 1977), both from the baseline's lengths.
  Only long prompts are flagged: cost and context overflows come from those.
- Language: detected with lingua (``lingua-language-detector``) among a configured set of candidate
  languages (``monitoring.drift.languages``), on the first :data:`LANGUAGE_CHARS` characters; a text too
  short or too ambiguous gets ``None`` and is never an outlier.
- Neighbours: a prompt whose cosine distance to its nearest baseline neighbour exceeds the
  :data:`NEIGHBOUR_PERCENTILE` percentile of the baseline's own nearest-neighbour distances (leave
  one out), the "distance to the nearest baseline neighbours" rule of the issue; the baseline is
  subsampled to :data:`NEIGHBOUR_BASELINE` rows.
- Characters: format characters (zero-width spaces and joiners, bidirectional overrides), private-use
  code points and control characters other than tab and newlines; and words mixing letters of two
  scripts (Latin with Cyrillic or Greek, as homoglyph attacks do).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ROBUST_Z = 3.5
NEIGHBOUR_PERCENTILE = 99.0
NEIGHBOUR_BASELINE = 2000
IQR_FENCE = 3.0
LANGUAGE_CHARS = 1000
_ALLOWED_CONTROLS = {"\n", "\r", "\t"}


@dataclass(slots=True, frozen=True)
class LengthFence:
    """The baseline's length statistics; :meth:`is_long` applies the module's rule."""

    median: float
    mad: float
    q3: float
    iqr: float

    @classmethod
    def of(cls, lengths: Sequence[int] | np.ndarray) -> LengthFence | None:
        x = np.asarray(lengths, dtype=np.float64)
        if x.size < 2:
            return None
        med = float(np.median(x))
        q1, q3 = (float(v) for v in np.percentile(x, [25, 75]))
        return cls(med, float(np.median(np.abs(x - med))), q3, q3 - q1)

    def is_long(self, n: float) -> bool:
        if self.mad > 0 and 0.6745 * (n - self.median) / self.mad > ROBUST_Z:
            return True
        fence = self.q3 + IQR_FENCE * self.iqr
        return n > fence if self.iqr > 0 else n > 2 * max(self.q3, 1.0)


def odd_characters(text: str) -> bool:
    """Whether ``text`` holds invisible characters or a word mixing scripts (module docstring)."""
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cf", "Co") or (cat == "Cc" and ch not in _ALLOWED_CONTROLS):
            return True
    return any(_mixed_script(word) for word in text.split())


def _mixed_script(word: str) -> bool:
    scripts = set()
    for ch in word:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            scripts.add(name.split(" ", 1)[0])
            if len(scripts) > 1:
                return True
    return False


class LanguageDetector:
    """lingua among ``languages`` (ISO 639-1 codes); built on first use (lingua loads lazily)."""

    def __init__(self, languages: Sequence[str]) -> None:
        self.languages = [code.lower() for code in languages]
        self._detector: Any = None

    def _build(self) -> Any:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        langs = []
        for code in self.languages:
            try:
                langs.append(Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())))
            except (AttributeError, ValueError):
                raise ValueError(f"unknown language code {code!r}: use ISO 639-1 codes like en, fr") from None
        if len(langs) < 2:
            raise ValueError("lingua needs at least two candidate languages")
        return LanguageDetectorBuilder.from_languages(*langs).build()

    def detect(self, text: str) -> str | None:
        """The ISO 639-1 code of ``text``'s language, or ``None`` when lingua cannot tell."""
        if not any(ch.isalpha() for ch in text):
            return None
        if self._detector is None:
            self._detector = self._build()
        lang = self._detector.detect_language_of(text[:LANGUAGE_CHARS])
        return None if lang is None else str(lang.iso_code_639_1.name).lower()


def far_from_baseline(baseline: np.ndarray, current: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Which ``current`` rows (unit vectors) lie farther from their nearest baseline neighbour than
    the baseline's own 99th percentile of nearest-neighbour distance (module docstring)."""
    if len(baseline) < 10 or len(current) == 0:
        return np.zeros(len(current), bool)
    rng = np.random.default_rng(seed)
    ref = (
        baseline
        if len(baseline) <= NEIGHBOUR_BASELINE
        else baseline[rng.choice(len(baseline), NEIGHBOUR_BASELINE, replace=False)]
    )
    ref = ref.astype(np.float32)
    sims = ref @ ref.T
    np.fill_diagonal(sims, -np.inf)
    fence = float(np.percentile(1.0 - sims.max(axis=1), NEIGHBOUR_PERCENTILE))
    out = np.zeros(len(current), bool)
    for i in range(0, len(current), 2048):
        chunk = current[i : i + 2048].astype(np.float32)
        out[i : i + 2048] = 1.0 - (chunk @ ref.T).max(axis=1) > fence
    return out
