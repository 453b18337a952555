"""Synthetic data: a card-transaction stream with chargebacks (the leakage demo) and large join inputs (benchmark).

``fraud_stream`` -- a documented generative story, seeded:

* ``n_accounts`` accounts over ``days`` days. Account a makes legitimate transactions as a Poisson process with
  rate r_a ~ LogNormal(log 0.5, 0.5) per day; amounts ~ LogNormal(log 40, 0.8).
* With probability ``p_compromise`` an account is compromised at a uniform time c; a fraud burst follows:
  1 + Poisson(4) transactions at c plus cumulative Exp(mean 12 h) gaps, amounts ~ LogNormal(log 70, 0.8):
  fraud looks only a little different from honest use.
  Fraud is labelled ``is_fraud = 1`` (the label of each transaction).
* Each fraud is discovered by a chargeback ``U(2, 12)`` days later. Feature view ``account_risk`` gets a row at
  that time with the account's running ``chargebacks_total``; ``created`` is the event time plus an
  ingestion lag ``U(0, 2)`` h. A chargeback is caused by the very transaction it labels, so a join that takes the
  *latest* ``chargebacks_total`` instead of the one known at the transaction time reads the label.

``write_bench_view`` writes ``n_rows`` feature rows over ``n_keys`` keys (so about n_rows / n_keys updates per
key) to Parquet with DuckDB, in O(1) Python memory; ``bench_entities`` draws the entity rows.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

EPOCH = pd.Timestamp("2024-01-01")
DAY_US = 86_400_000_000
YEAR_US = 365 * DAY_US


def fraud_stream(n_accounts: int = 2000, days: int = 180, p_compromise: float = 0.15,
                 seed: int = 0) -> dict[str, pd.DataFrame]:
    """``{"transactions": ..., "account_risk": ...}``; see the module docstring for the process."""
    rng = np.random.default_rng(seed)
    rate = np.exp(rng.normal(np.log(0.5), 0.5, n_accounts))
    n_legit = rng.poisson(rate * days)
    acc = np.repeat(np.arange(n_accounts), n_legit)
    t = rng.uniform(0, days, acc.size)
    amount = np.exp(rng.normal(np.log(40), 0.8, acc.size))
    fraud = np.zeros(acc.size, dtype=np.int8)
    hit = np.flatnonzero(rng.random(n_accounts) < p_compromise)
    c = rng.uniform(0, days, hit.size)
    burst = 1 + rng.poisson(4, hit.size)
    f_acc = np.repeat(hit, burst)
    gaps = rng.exponential(12 / 24, f_acc.size)
    starts = np.repeat(np.cumsum(burst) - burst, burst)
    cum = np.cumsum(gaps)
    f_t = np.repeat(c, burst) + cum - np.concatenate([[0], cum])[starts]
    keep = f_t < days
    f_acc, f_t = f_acc[keep], f_t[keep]
    f_amount = np.exp(rng.normal(np.log(70), 0.8, f_acc.size))
    tx = pd.DataFrame({"account_id": np.concatenate([acc, f_acc]),
                       "event_timestamp": _at(np.concatenate([t, f_t])),
                       "amount": np.concatenate([amount, f_amount]).round(2),
                       "is_fraud": np.concatenate([fraud, np.ones(f_acc.size, dtype=np.int8)])})
    tx = tx.sort_values(["event_timestamp", "account_id"], kind="stable").reset_index(drop=True)
    cb_t = f_t + rng.uniform(2, 12, f_acc.size)
    cb = pd.DataFrame({"account_id": f_acc, "t": cb_t}).sort_values(["account_id", "t"], kind="stable")
    cb["chargebacks_total"] = cb.groupby("account_id").cumcount() + 1
    cb["event_timestamp"] = _at(cb.pop("t").to_numpy()).to_numpy()
    cb["created"] = cb["event_timestamp"] + pd.to_timedelta(rng.uniform(0, 2, len(cb)), unit="h").round("us")
    return {"transactions": tx, "account_risk": cb.reset_index(drop=True)}


def _at(days: np.ndarray) -> pd.Series:
    return pd.Series(EPOCH + pd.to_timedelta(np.round(days * DAY_US), unit="us")).dt.as_unit("us")


def write_bench_view(path: str | Path, n_rows: int, n_keys: int, *, composite: bool = False, seed: int = 0,
                     con: duckdb.DuckDBPyConnection | None = None) -> Path:
    """Parquet of ``n_rows`` feature rows: keys uniform over ``n_keys`` entities, event times uniform over 2024
    (microseconds), created = event + U(0, 1 h), two DOUBLE features. Composite keys are (customer_id, region)."""
    con = con or duckdb.connect()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h = f"hash(i + {seed * 1_000_003})"
    keys = (f"({h} % {max(1, n_keys // 8)})::BIGINT AS customer_id, ({h} // 7 % 8)::BIGINT AS region"
            if composite else f"({h} % {n_keys})::BIGINT AS driver_id")
    feats = ("(hash(i, 1) % 10000) / 100.0 AS spend, (hash(i, 2) % 50)::DOUBLE AS visits" if composite else
             "(hash(i, 1) % 1000) / 1000.0 AS conv_rate, (hash(i, 2) % 100)::DOUBLE AS trips")
    con.execute(f"""COPY (SELECT {keys}, {feats},
            TIMESTAMP '2024-01-01' + to_microseconds((hash(i, 3) % {YEAR_US})::BIGINT) AS event_timestamp,
            TIMESTAMP '2024-01-01' + to_microseconds((hash(i, 3) % {YEAR_US} + hash(i, 4) % 3600000000)::BIGINT)
                AS created
        FROM range({n_rows}) t(i)) TO '{path}' (FORMAT parquet)""")
    return path


def bench_entities(n: int, n_keys_driver: int, n_keys_customer: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Entity rows with uniform keys and times over 2024 (microseconds)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"driver_id": rng.integers(0, n_keys_driver, n)})
    if n_keys_customer is not None:
        df["customer_id"] = rng.integers(0, max(1, n_keys_customer // 8), n)
        df["region"] = rng.integers(0, 8, n)
    df["event_timestamp"] = (EPOCH + pd.to_timedelta(rng.integers(0, YEAR_US, n), unit="us")).as_unit("us")
    return df
