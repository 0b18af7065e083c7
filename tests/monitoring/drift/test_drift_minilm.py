"""The stream with the real packaged MiniLM (slow: one model load per module): an A/A split of one
window gives an AUC near 0.5, 20 unchanged windows raise no alert, the topic change alerts within two
windows."""

from __future__ import annotations

import numpy as np
import pytest

from drift_stream import BEFORE, stream, window
from modelyard.embeddings import Embedder, load_embedder
from modelyard.monitoring.drift.fingerprints import canonical
from modelyard.monitoring.drift.methods import domain_classifier_auc, mmd
from modelyard.monitoring.drift.monitors import MonitorSpec, Window, alert, evaluate
from modelyard.monitoring.drift.templates import TemplateMiner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return load_embedder("packaged:all-minilm-l6-v2")


def _window(texts: list[str], emb: Embedder, miner: TemplateMiner, start: int) -> Window:
    return Window(
        ids=np.arange(start, start + len(texts)), embeddings=emb.embed(texts),
        n_tokens=np.array(emb.count_tokens(texts)), languages=["en"] * len(texts),
        odd_chars=np.zeros(len(texts), bool), templates=[f"drain:{miner.add(canonical(t)).id}" for t in texts],
    )  # fmt: skip


def test_a_a_split_of_one_window_gives_an_auc_near_one_half(minilm: Embedder) -> None:
    rng = np.random.default_rng(11)
    emb = minilm.embed(window(400, BEFORE, rng))
    order = rng.permutation(400)
    auc = domain_classifier_auc(emb[order[:200]], emb[order[200:]])
    assert abs(auc - 0.5) < 0.08, auc
    assert mmd(emb[order[:200]], emb[order[200:]])[1] > 0.05


def test_the_stream_alerts_within_two_windows_of_the_change_and_not_before(minilm: Embedder) -> None:
    windows = stream(24, 150, change_at=22, seed=5)
    spec = MonitorSpec(id="minilm", methods=("domain_classifier", "mmd", "centroid"))
    miner = TemplateMiner()
    baseline = _window(windows[0] + windows[1], minilm, miner, 0)
    statuses: list[str] = []
    alerts: list[bool] = []
    for i, texts in enumerate(windows[2:], start=2):
        r = evaluate(spec, baseline, _window(texts, minilm, miner, i * 1000), seed=i)
        alerts.append(alert(r["status"], statuses[::-1], spec.alert_after))
        statuses.append(r["status"])
    assert not any(alerts[:20]), statuses
    assert statuses[20:] == ["drift", "drift"] and alerts[21], statuses
