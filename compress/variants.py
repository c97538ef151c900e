"""The record of compressed variants: table `compress_variants`, beside the study in its own database.

One row per variant (pruned, scratch, int8, fp16) keyed by (study, id), next to its parent trial and
parent variant, so the report and the export read it and re-running compression skips finished
variants. Every row holds its architecture (`spec`); a scratch variant also holds the training settings
it was trained with from scratch (`train_config`, its trial's), which is what export needs to rebuild
its recipe. A storage that is not an SQLAlchemy URL gets a SQLite file under `runs/NAME/compress/`.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

METADATA = sa.MetaData()
VARIANTS = sa.Table(
    "compress_variants", METADATA,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("study", sa.String(200), primary_key=True),
    sa.Column("trial", sa.Integer, nullable=False),
    sa.Column("parent", sa.String(200), nullable=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("ratio", sa.Float, nullable=True),
    sa.Column("importance", sa.String(20), nullable=True),
    sa.Column("params", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("flops", sa.BigInteger, nullable=True),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("delta", sa.Text, nullable=False),
    sa.Column("summary", sa.String(500), nullable=True),
    sa.Column("path", sa.String(500), nullable=False),
    sa.Column("spec", sa.Text, nullable=True),
    sa.Column("left_out", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("train_config", sa.Text, nullable=True),
    sa.Column("t4_s", sa.Float, nullable=True),
    extend_existing=True,
)


@dataclass
class Variant:
    """One compressed model as recorded; `delta` is the change against its parent (trial or variant)."""

    id: str
    study: str
    trial: int
    kind: str
    """pruned (and fine-tuned), scratch (the pruned spec trained from scratch), int8 or fp16."""
    params: int
    bytes: int
    score: float
    metrics: dict
    """The first target's validation metrics (plcc, srcc, ...)."""
    path: str
    """Checkpoint file, relative to the run directory."""
    parent: str | None = None
    ratio: float | None = None
    importance: str | None = None
    flops: int | None = None
    delta: dict = field(default_factory=dict)
    summary: str | None = None
    spec: dict | None = None
    """The variant's architecture (int8/fp16: their parent's)."""
    left_out: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    train_config: dict | None = None
    """Scratch variants: the `TrainConfig` they were trained with (their trial's recipe)."""
    t4_s: float | None = None
    """Scratch variants: estimated T4 seconds of that training (`search.budget`)."""


def variants_url(storage_url: str, run_dir: Path) -> str:
    """The study's own database when `storage_url` is an SQLAlchemy URL, else a SQLite file in the run."""
    try:
        sa.engine.make_url(storage_url)
        return storage_url
    except sa.exc.ArgumentError:
        path = Path(run_dir) / "compress" / "variants.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"


@lru_cache(maxsize=8)
def _engine(url: str) -> sa.Engine:
    args = {"timeout": 60} if url.startswith("sqlite") else {}  # wait for the study's writers
    engine = sa.create_engine(url, connect_args=args)
    METADATA.create_all(engine, tables=[VARIANTS])
    present = {c["name"] for c in sa.inspect(engine).get_columns(VARIANTS.name)}
    with engine.begin() as conn:  # a table made by an older version lacks the nullable columns added since
        for col in (c for c in VARIANTS.columns if c.name not in present):
            conn.execute(sa.text(f"ALTER TABLE {VARIANTS.name} ADD COLUMN {col.name} "
                                 f"{col.type.compile(engine.dialect)}"))
    return engine


def record_variant(storage_url: str, variant: Variant) -> None:
    """Insert (or replace) one variant row."""
    row = asdict(variant)
    for key in ("metrics", "delta", "spec", "left_out", "train_config"):
        row[key] = None if row[key] is None else json.dumps(row[key])
    with _engine(storage_url).begin() as conn:
        conn.execute(sa.delete(VARIANTS).where(VARIANTS.c.study == variant.study, VARIANTS.c.id == variant.id))
        conn.execute(sa.insert(VARIANTS).values(**row))


def variant_exists(storage_url: str, study: str, variant_id: str) -> bool:
    with _engine(storage_url).connect() as conn:
        q = sa.select(VARIANTS.c.id).where(VARIANTS.c.study == study, VARIANTS.c.id == variant_id)
        return conn.execute(q).first() is not None


def list_variants(storage_url: str, study: str) -> pd.DataFrame:
    """Every variant of `study`, metrics and deltas (`d_score`, `d_params`, ...) expanded into columns,
    `state` COMPLETE: the layout the report concatenates under its trial rows."""
    with _engine(storage_url).connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            sa.select(VARIANTS).where(VARIANTS.c.study == study).order_by(VARIANTS.c.created))]
    for r in rows:
        r.update(json.loads(r.pop("metrics")))
        r.update({f"d_{k}": v for k, v in json.loads(r.pop("delta")).items()})
        for key in ("spec", "train_config"):
            r[key] = json.loads(r[key]) if r[key] else None
        r["left_out"] = json.loads(r["left_out"])
        r["kind"] = "pruned" if r["kind"] == "prune" else r["kind"]  # the name before scratch variants existed
        r["state"] = "COMPLETE"
    return pd.DataFrame(rows)


class VariantStore:
    """The record of one (storage, study), as `run_search.py report` reads it."""

    def __init__(self, storage_url: str, study: str):
        self.url, self.study = storage_url, study

    def exists(self, variant_id: str) -> bool:
        return variant_exists(self.url, self.study, variant_id)

    def frame(self) -> pd.DataFrame:
        return list_variants(self.url, self.study)
