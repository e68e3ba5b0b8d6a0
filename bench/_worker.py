"""One measurement in a fresh process: ``python _worker.py PART OUT_JSON PARAMS_JSON``.

A fresh interpreter per measurement keeps parts from sharing garbage, threads or DBOS's
global instance. The PostgreSQL DSN comes from the environment (LITEFLEET_BENCH_PG), never
from argv, so it does not show up in process listings.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def measure(part: str, params: dict[str, Any]) -> dict[str, Any]:
    workdir = Path(params["workdir"])
    db_path = workdir / f"{part}.db"
    if part == "a":
        import _raw_sqlite

        return _raw_sqlite.run(db_path, params["commits"])
    if part in ("b", "c", "pg_b", "pg_c"):
        import _runtime_parts

        if part.startswith("pg_"):
            import _pg

            with _pg.fresh_database(os.environ["LITEFLEET_BENCH_PG"]) as dsn:
                return _runtime_parts.run(part, dsn, params["workflows"], params["steps"])
        return _runtime_parts.run(part, str(db_path), params["workflows"], params["steps"])
    if part == "http":
        import _http_parts

        return _http_parts.run(
            workdir, params["workflows"], params["steps"], params["clients"], params["idle_submits"]
        )
    if part in ("dbos_b", "dbos_c"):
        import _dbos_parts

        return _dbos_parts.run(part, db_path, params["workflows"], params["steps"])
    if part == "rss":
        import _runtime_parts

        return _runtime_parts.rss(db_path, params["settle_s"], workdir / "serve.log")
    raise SystemExit(f"unknown part {part!r}")


def main() -> None:
    part, out, params = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    result = measure(part, params)
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
