"""A canary controller process: the periodic task ``experiments.canary`` (as ``serve`` runs it) under
the PostgreSQL lease, appending its pid to a file after each check it ran.

Usage: ``python canary_controller.py DATABASE_URL EVERY_S OUT_FILE``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from modelyard.experiments.canary import canary_task
from modelyard.jobs.leases import PostgresLease
from modelyard.jobs.periodic import PeriodicRunner, PeriodicTask
from modelyard.settings import Settings


async def main(database_url: str, every_s: float, out: Path) -> None:
    settings = Settings(database_url=database_url, experiments={"canary_every_s": every_s})
    task = canary_task(settings)

    async def check(token: int) -> None:
        await task.fn(token)
        with out.open("a") as f:
            f.write(f"{os.getpid()}\n")

    runner = PeriodicRunner([PeriodicTask(task.name, task.every_s, check)], PostgresLease(database_url))
    runner.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    url, every, out = sys.argv[1:4]
    asyncio.run(main(url, float(every), Path(out)))
