"""CPU per candidate of the cold 成绩 answer, in one process: no HTTP, no dedupe, no noise from them.

    python -m bench.cold_sheet                       # seeds 20,000 candidates in a temporary SQLite file
    python -m bench.cold_sheet --database-url URL    # an already seeded database (bench.results_day.seed)

For every candidate, in batches of 32 as the edge's prefetch loads them: `load_candidates` (the
one UNION ALL statement and the result objects), `latest_sheet` (当次成绩 and the summaries) and
`dialogs.queries.latest_text` (the reply text). Prints microseconds of process CPU per candidate
for each part, the best of `--reps` passes (the database file is in the page cache after the
first). Steadier than the loadgen's CPU per message on a shared machine: used for the A/B of
docs/performance.md, "Round 2". No figure is asserted by a test.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time


async def measure(url: str, limit: int, reps: int) -> dict[str, float]:
    from sqlalchemy import text

    from dialogs import queries as dq
    from storage import models as m
    from storage import queries as sq
    from storage.db import Database

    db = Database(url)
    async with db.session() as s:
        ref = await sq.load_reference(s)
        ids = [r[0] for r in (await s.execute(text(
            "SELECT DISTINCT candidate_id FROM score_records ORDER BY candidate_id LIMIT :n"), {"n": limit})).all()]
    now = m.utcnow()
    best: dict[str, float] = {}
    for _ in range(reps):
        spent = {"load": 0.0, "sheet": 0.0, "text": 0.0}
        async with db.engine.connect() as conn:
            for i in range(0, len(ids), 32):
                t0 = time.process_time()
                loaded = await sq.load_candidates(conn, ids[i:i + 32], ref.majors)
                t1 = time.process_time()
                sheets = [sq.latest_sheet(ref, d, now) for d in loaded.values()]
                t2 = time.process_time()
                for sheet in sheets:
                    dq.latest_text(sheet)
                t3 = time.process_time()
                spent["load"] += t1 - t0
                spent["sheet"] += t2 - t1
                spent["text"] += t3 - t2
        for k, v in spent.items():
            best[k] = min(best.get(k, float("inf")), v * 1e6 / max(1, len(ids)))
    await db.engine.dispose()
    best["total"] = sum(best.values())
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", help="a database seeded by bench.results_day.seed (default: seed one)")
    p.add_argument("--candidates", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    os.environ.setdefault("ZIKAO_MODE", "demo")  # the demo SECRET_KEY: bench data only
    url = args.database_url
    with tempfile.TemporaryDirectory(prefix="zikao-cold-") as tmp:
        if url is None:
            from bench.results_day import seed

            url = f"sqlite:///{tmp}/cold.sqlite3"
            asyncio.run(seed(url, args.candidates))
        best = asyncio.run(measure(url, args.candidates, args.reps))
    print(" ".join(f"{k}={v:.1f}us" for k, v in best.items()), "per candidate (process CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
