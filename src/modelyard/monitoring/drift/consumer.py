"""The background consumer: new request-log rows → sample → embed in batches → store.

Each run reads up to ``max_rows_per_run`` rows after its cursor (the last request-log id it has seen,
kept in ``drift_state``), keeps a ``sample_rate`` share of them chosen by a hash of the request id (so
a re-run or a second consumer keeps the same ones), and for each kept prompt with text stores its
embedding, fingerprint, template, length in tokens, language and odd-character flag, and of its
response the length in tokens and whether it refused (for output drift). The template is
the prompt registry's ``prompt:name:version`` when the request was rendered from the registry, else
the cluster of the template miner (``drain:<id>``), whose state is saved with the cursor in the same
transaction as the samples, so a crash repeats a batch at most, never skips one.

Rows younger than :data:`SETTLE_S` are left for the next run: request-log ids are handed out before
their transaction commits, so a newer id may become visible before an older one.

CPU budget: after each batch the consumer sleeps so that its busy (wall) time stays under ``cpu_share``
of the time. It runs in a worker thread of the periodic task (never on the event loop); during a
batch torch may use its intra-op threads (``torch.get_num_threads()``), so on a machine with a
local engine lower ``cpu_share`` or ``sample_rate`` rather than expect one core's share exactly.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from modelyard.embeddings import Embedder
from modelyard.monitoring.drift.fingerprints import canonical, prompt_text
from modelyard.monitoring.drift.outliers import LanguageDetector, odd_characters
from modelyard.monitoring.drift.store import DriftStore, Sample
from modelyard.monitoring.drift.templates import TemplateMiner
from modelyard.monitoring.requestlog.records import RequestLogRow
from modelyard.settings import DriftSettings

CURSOR, MINER = "consumer.cursor", "templates.miner"
SETTLE_S = 5.0
MAX_EMBED_CHARS = 4000


@dataclass(slots=True)
class ConsumeStats:
    read: int = 0
    sampled: int = 0
    stored: int = 0
    busy_s: float = 0.0


def sampled(request_id: str, rate: float) -> bool:
    """Whether ``request_id`` falls in the ``rate`` share (a stable hash, not a random draw)."""
    if rate >= 1.0:
        return True
    h = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big")
    return h / 2**64 < rate


class DriftConsumer:
    def __init__(
        self,
        store: DriftStore,
        settings: DriftSettings,
        *,
        embedder: Embedder | None = None,
        detector: LanguageDetector | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store, self.settings = store, settings
        self._embedder = embedder
        self._detector = detector or LanguageDetector(settings.languages)
        self._sleep = sleep

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from modelyard.embeddings import load_embedder

            self._embedder = load_embedder(self.settings.embedder, max_batch=self.settings.batch_size)
        return self._embedder

    def run_once(self, now: datetime | None = None) -> ConsumeStats:
        """Consume what is new (module docstring)."""
        now = now or datetime.now(UTC)
        stats = ConsumeStats()
        cursor = int((self.store.get_state(CURSOR) or {}).get("last_id", 0))
        state = self.store.get_state(MINER)
        miner = TemplateMiner.from_state(state) if state else TemplateMiner()
        t = RequestLogRow.__table__.c
        stmt = (
            sa.select(
                t.id,
                t.request_id,
                t.created_at,
                t.tenant,
                t.model,
                t.prompt,
                t.prompt_version,
                t.response,
                t.finish_reason,
                t.completion_tokens,
            )  # fmt: skip
            .where(t.id > cursor, t.created_at < now - timedelta(seconds=SETTLE_S))
            .order_by(t.id)
            .limit(self.settings.max_rows_per_run)
        )
        with self.store.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        stats.read = len(rows)
        done = self.store.sampled_ids(rows[0].id, rows[-1].id) if rows else set()
        keep: list[tuple[Any, str]] = []
        for r in rows:
            if r.id not in done and sampled(r.request_id, self.settings.sample_rate):
                text = prompt_text(r.prompt)
                if text.strip():
                    keep.append((r, text))
        stats.sampled = len(keep)
        size = self.settings.batch_size
        for i in range(0, max(len(keep), 1), size):
            batch = keep[i : i + size]
            started = time.perf_counter()
            samples = self._samples(batch, miner)
            last = batch[-1][0].id if batch and i + size < len(keep) else (rows[-1].id if rows else cursor)
            self.store.commit_samples(samples, {CURSOR: {"last_id": int(last)}, MINER: miner.state()})
            busy = time.perf_counter() - started
            stats.busy_s += busy
            stats.stored += len(samples)
            if batch and self.settings.cpu_share < 1.0:
                self._sleep(busy * (1.0 / self.settings.cpu_share - 1.0))
        return stats

    def _samples(self, batch: list[tuple[Any, str]], miner: TemplateMiner) -> list[Sample]:
        if not batch:
            return []
        texts = [text[:MAX_EMBED_CHARS] for _, text in batch]
        vectors = self.embedder.embed(texts)
        tokens = self.embedder.count_tokens(texts)
        out = []
        for (r, text), vec, n in zip(batch, vectors, tokens, strict=True):
            response_tokens, refusal = _response(r)
            canon = canonical(text)
            template = f"prompt:{r.prompt_version}" if r.prompt_version else f"drain:{miner.add(canon).id}"
            created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
            out.append(
                Sample(
                    request_log_id=int(r.id), created_at=created, model=r.model, tenant=r.tenant,
                    prompt_version=r.prompt_version,
                    fingerprint=hashlib.sha256(canon.encode()).hexdigest(), template_id=template,
                    n_tokens=int(n), language=self._detector.detect(text), odd_chars=odd_characters(text),
                    embedder=self.settings.embedder, embedding=vec,
                    response_tokens=response_tokens, refusal=refusal,
                )
            )  # fmt: skip
        return out


def _response(row: Any) -> tuple[int | None, bool | None]:
    """(length in tokens, refused) of the row's response: the completion tokens the backend counted,
    else whitespace words; a refusal phrase of the ``refusal`` scorer or ``content_filter``."""
    if row.response is None and row.finish_reason is None:
        return None, None
    from modelyard.evals.scorers.refusal import DEFAULT_PHRASES

    text = (row.response or "").replace("\u2019", "'").casefold()
    refused = row.finish_reason == "content_filter" or any(p in text for p in DEFAULT_PHRASES)
    n = row.completion_tokens if row.completion_tokens is not None else len(text.split())
    return int(n), refused


def backfill_cursor(store: DriftStore, since: datetime) -> int:
    """Point the cursor just before the first request-log row created at or after ``since``, so the
    next runs re-read the log from there (samples already stored are not duplicated: ids in the
    store's range are skipped). Returns the new cursor."""
    t = RequestLogRow.__table__.c
    with store.engine.connect() as conn:
        first = conn.execute(sa.select(sa.func.min(t.id)).where(t.created_at >= since)).scalar_one()
    cursor = int(first) - 1 if first is not None else int((store.get_state(CURSOR) or {}).get("last_id", 0))
    store.commit_samples([], {CURSOR: {"last_id": cursor}})
    return cursor
