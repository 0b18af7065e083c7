"""A process that runs one periodic task under a lease and appends ``<pid> <token>`` to a file per run.

Usage: ``python lease_holder.py postgres|redis TARGET TASK_NAME EVERY_S OUT_FILE`` (TARGET: the
database URL or the Redis URL; the Redis key prefix is the task name)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from modelyard.jobs.leases import Lease, PostgresLease, RedisLease
from modelyard.jobs.periodic import PeriodicRunner, PeriodicTask


def make_lease(kind: str, target: str, prefix: str) -> Lease:
    return PostgresLease(target) if kind == "postgres" else RedisLease(target, key_prefix=prefix)


async def main(kind: str, target: str, name: str, every_s: float, out: Path) -> None:
    async def record(token: int) -> None:
        with out.open("a") as f:
            f.write(f"{os.getpid()} {token}\n")

    runner = PeriodicRunner([PeriodicTask(name, every_s, record)], make_lease(kind, target, name))
    runner.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    kind, target, name, every, out = sys.argv[1:6]
    asyncio.run(main(kind, target, name, float(every), Path(out)))
