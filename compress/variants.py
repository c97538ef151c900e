"""The record of compressed variants: a table beside the study, in the same database.

Each variant (pruned, int8, fp16) is one row keyed by its id, next to its parent trial, so the report
and the export see it, and re-running compression skips what is already there.
"""
from __future__ import annotations

import json
import time

import pandas as pd
import sqlalchemy as sa

METADATA = sa.MetaData()
VARIANTS = sa.Table(
    "liqa_compress_variants", METADATA,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("study", sa.String(200), primary_key=True),
    sa.Column("trial", sa.Integer, nullable=False),
    sa.Column("parent", sa.String(200), nullable=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("ratio", sa.Float, nullable=True),
    sa.Column("importance", sa.String(20), nullable=True),
    sa.Column("params", sa.Integer, nullable=False),
    sa.Column("flops", sa.BigInteger, nullable=True),
    sa.Column("bytes", sa.Integer, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("summary", sa.String(500), nullable=True),
    sa.Column("path", sa.String(500), nullable=False),
    sa.Column("left_out", sa.Text, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
)


class VariantStore:
    """Read and write variant rows through SQLAlchemy (SQLite or any server database)."""

    def __init__(self, storage_url: str, study: str):
        self.engine = sa.create_engine(storage_url)
        self.study = study
        METADATA.create_all(self.engine, tables=[VARIANTS])

    def exists(self, variant_id: str) -> bool:
        with self.engine.connect() as conn:
            q = sa.select(VARIANTS.c.id).where(VARIANTS.c.study == self.study, VARIANTS.c.id == variant_id)
            return conn.execute(q).first() is not None

    def record(self, variant_id: str, trial: int, kind: str, params: int, bytes_: int, score: float,
               metrics: dict, path: str, parent: str | None = None, ratio: float | None = None,
               importance: str | None = None, flops: int | None = None, summary: str | None = None,
               left_out: list[str] | None = None) -> None:
        row = dict(id=variant_id, study=self.study, trial=trial, parent=parent, kind=kind, ratio=ratio,
                   importance=importance, params=params, flops=flops, bytes=bytes_, score=score,
                   metrics=json.dumps(metrics), summary=summary, path=path,
                   left_out=json.dumps(left_out or []), created=time.time())
        with self.engine.begin() as conn:
            conn.execute(sa.delete(VARIANTS).where(VARIANTS.c.study == self.study, VARIANTS.c.id == variant_id))
            conn.execute(sa.insert(VARIANTS).values(**row))

    def frame(self) -> pd.DataFrame:
        """Every variant of the study, with metrics expanded into columns, in the report's layout."""
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(VARIANTS).where(VARIANTS.c.study == self.study))]
        for r in rows:
            r.update(json.loads(r.pop("metrics")))
            r["left_out"] = json.loads(r["left_out"] or "[]")
            r["state"] = "COMPLETE"
        return pd.DataFrame(rows)
