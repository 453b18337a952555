"""The leakage demonstration: a naive latest-value join against the point-in-time join, same model on both.

The model is L2-regularised logistic regression fitted by Newton's method (IRLS) in numpy; the score is ROC AUC
(Mann-Whitney, ties counted half). A training set built at ``as_of`` with the naive join reads every feature's
value at ``as_of``; the point-in-time join reads it at each label's own time, which is also what an online
store serves when the model is used. The naive model is therefore scored offline on leaked values and in use
on honest ones -- the gap is the leak.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from workbench.features.offline import ROW
from workbench.features.store import FeatureStore
from workbench.features.view import FeatureView, parse_ref, quote
from workbench.plotting import pyplot, save_png

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
MODEL_FEATURES = ["log_amount", "log_txn_count_24h", "log_amount_mean_7d", "chargebacks_total"]


def naive_latest_join(fs: FeatureStore, entity_df: pd.DataFrame, refs: Sequence[str],
                      as_of: pd.Timestamp) -> pd.DataFrame:
    """The leaky join: each key's latest row with event time <= ``as_of``, whatever the entity row's time."""
    out = entity_df.copy()
    for ref in refs:
        name, feature = parse_ref(ref)
        view = fs.get_feature_view(name)
        keys = ", ".join(quote(k) for k in view.entities)
        order = (f"struct_pack(t := {quote(view.timestamp_field)}, r := {ROW})")
        latest = fs.con.execute(f"SELECT {keys}, arg_max({quote(feature)}, {order}) AS {quote(feature)} "
                                f"FROM {fs.offline.table(name)} WHERE {quote(view.timestamp_field)} <= ? "
                                f"GROUP BY ALL", [as_of.to_pydatetime()]).df()
        merged = out[list(view.entities)].merge(latest, on=list(view.entities), how="left")
        out[feature] = merged[feature].to_numpy()
    return out


def build_store(data: dict[str, pd.DataFrame], path: str | Path | None = None) -> FeatureStore:
    """The demo's two views: ``transactions`` (amount per event) and ``account_risk`` (chargebacks)."""
    fs = FeatureStore(path)
    fs.apply(FeatureView("transactions", ["account_id"], ["amount"], ttl=timedelta(days=7)),
             data["transactions"][["account_id", "amount", "event_timestamp"]])
    fs.apply(FeatureView("account_risk", ["account_id"], ["chargebacks_total"],
                         created_timestamp_column="created"), data["account_risk"])
    return fs


def model_frame(fs: FeatureStore, tx: pd.DataFrame, *, naive_as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """Model inputs for transactions ``tx``: window features (point-in-time) and ``chargebacks_total``,
    joined point-in-time, or naively at ``naive_as_of`` when given."""
    ent = tx[["account_id", "event_timestamp", "amount", "is_fraud"]].rename(columns={"amount": "txn_amount"})
    w = fs.get_window_features(ent, "transactions:amount", WINDOWS, ["count", "mean"])
    if naive_as_of is None:
        j = fs.get_historical_features(ent, ["account_risk:chargebacks_total"])
    else:
        j = naive_latest_join(fs, ent, ["account_risk:chargebacks_total"], naive_as_of)
    return pd.DataFrame({
        "log_amount": np.log1p(ent["txn_amount"].to_numpy(float)),
        "log_txn_count_24h": np.log1p(w["amount_count_24h"].to_numpy(float)),
        "log_amount_mean_7d": np.log1p(w["amount_mean_7d"].astype(float).fillna(0).to_numpy()),
        "chargebacks_total": j["chargebacks_total"].astype(float).fillna(0).to_numpy(),
        "is_fraud": ent["is_fraud"].to_numpy(),
        "event_timestamp": ent["event_timestamp"].to_numpy(),
    }, index=tx.index)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 30) -> dict:
    """L2 logistic regression on standardised inputs by Newton's method; returns weights and scaling."""
    mu, sd = X.mean(0), X.std(0) + 1e-12
    Z = np.hstack([np.ones((len(X), 1)), (X - mu) / sd])
    w = np.zeros(Z.shape[1])
    reg = l2 * np.eye(Z.shape[1])
    reg[0, 0] = 0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-Z @ w))
        grad = Z.T @ (p - y) + reg @ w
        hess = (Z * (p * (1 - p))[:, None]).T @ Z + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"w": w, "mu": mu, "sd": sd}


def predict(model: dict, X: np.ndarray) -> np.ndarray:
    Z = (X - model["mu"]) / model["sd"]
    return 1 / (1 + np.exp(-(model["w"][0] + Z @ model["w"][1:])))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (Mann-Whitney U / n+ n-)."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def leakage_experiment(fs: FeatureStore, tx: pd.DataFrame, train_end: pd.Timestamp, label_delay: timedelta,
                       holdout: float = 0.3, seed: int = 0) -> dict:
    """Train on transactions before ``train_end`` with the training set built at ``train_end + label_delay``
    (when the labels have matured): once naively, once point-in-time. Score each on a random holdout of the
    training period (offline, with its own join) and on transactions after the build time, with point-in-time
    values (what serving sees)."""
    as_of = train_end + label_delay
    train_tx = tx[tx["event_timestamp"] < train_end]
    later_tx = tx[tx["event_timestamp"] >= as_of]
    rng = np.random.default_rng(seed)
    is_hold = rng.random(len(train_tx)) < holdout
    later = model_frame(fs, later_tx)
    out: dict = {"n_train": int((~is_hold).sum()), "n_holdout": int(is_hold.sum()), "n_later": len(later),
                 "fraud_rate_train": float(train_tx["is_fraud"].mean()), "as_of": str(as_of)}
    frames = {}
    for name, naive in (("naive", as_of), ("pit", None)):
        frame = model_frame(fs, train_tx, naive_as_of=naive)
        frames[name] = frame
        X, y = frame[MODEL_FEATURES].to_numpy(float), frame["is_fraud"].to_numpy(float)
        model = fit_logistic(X[~is_hold], y[~is_hold])
        out[f"{name}_auc_offline"] = roc_auc(y[is_hold], predict(model, X[is_hold]))
        out[f"{name}_auc_later"] = roc_auc(later["is_fraud"], predict(model, later[MODEL_FEATURES].to_numpy(float)))
        out[f"{name}_weights"] = dict(zip(["intercept", *MODEL_FEATURES], map(float, model["w"])))
    out["frames"] = frames
    return out


def online_check(fs: FeatureStore, refs: Sequence[str], keys: pd.DataFrame, at: pd.Timestamp) -> dict:
    """Materialise up to ``at`` and compare the online values for ``keys`` with the offline join at ``at``."""
    fs.materialize_incremental(at)
    online = fs.get_online_features(refs, keys, at=at)
    offline = fs.get_historical_features(keys.assign(event_timestamp=at), refs)
    out: dict = {"at": str(at), "n_keys": len(keys)}
    for ref in refs:
        f = parse_ref(ref)[1]
        a = pd.to_numeric(online.values[f], errors="coerce").to_numpy(float)
        b = pd.to_numeric(offline[f], errors="coerce").to_numpy(float)
        out[f"{f}_mismatches"] = int((~((a == b) | (np.isnan(a) & np.isnan(b)))).sum())
        out[f"{f}_status"] = online.status[f].value_counts().to_dict()
    return out


def plot_scores(result: dict, path: str | Path, title: str) -> Path:
    """Bars: AUC on the training-period holdout (offline) and on the later period (as served), per join."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = np.arange(2)
    for i, (name, label) in enumerate((("naive", "naive latest-value join"), ("pit", "point-in-time join"))):
        vals = [result[f"{name}_auc_offline"], result[f"{name}_auc_later"]]
        bars = ax.bar(x + (i - 0.5) * 0.38, vals, 0.38, label=label, color=("tab:red", "tab:blue")[i])
        ax.bar_label(bars, fmt="%.3f", fontsize=9)
    ax.set_xticks(x, ["offline\n(training-period holdout, own join)", "later period\n(features as served)"])
    ax.set_ylabel("ROC AUC")
    ax.set_ylim(0.5, 1.04)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return save_png(fig, path)


def plot_timeline(data: dict[str, pd.DataFrame], account: int, as_of: pd.Timestamp, path: str | Path,
                  title: str) -> Path:
    """One account: ``chargebacks_total`` as known over time, its transactions (fraud in red) and the value a
    naive join built at ``as_of`` would attach to every one of them."""
    plt = pyplot()
    tx = data["transactions"].query("account_id == @account")
    cb = data["account_risk"].query("account_id == @account").sort_values("event_timestamp")
    fig, ax = plt.subplots(figsize=(10, 4))
    steps_t = pd.concat([pd.Series([tx["event_timestamp"].min()]), cb["event_timestamp"],
                         pd.Series([tx["event_timestamp"].max()])])
    steps_v = [0, *cb["chargebacks_total"], cb["chargebacks_total"].iloc[-1] if len(cb) else 0]
    ax.step(steps_t, steps_v, where="post", color="tab:blue", label="chargebacks_total (point-in-time value)")
    naive = int(cb.loc[cb["event_timestamp"] <= as_of, "chargebacks_total"].max()) if len(cb) else 0
    ax.axhline(naive, color="tab:red", ls="--", label=f"naive join's value for every row (as of {as_of:%Y-%m-%d})")
    ax.axvline(as_of, color="grey", ls=":", label="training set built (labels matured)")
    legit, fraud = tx[tx["is_fraud"] == 0], tx[tx["is_fraud"] == 1]
    ax.plot(legit["event_timestamp"], np.full(len(legit), -0.3), "|", color="grey", ms=10,
            label="transaction (label 0)")
    ax.plot(fraud["event_timestamp"], np.full(len(fraud), -0.3), "|", color="tab:red", ms=16, mew=2,
            label="transaction (label 1: fraud)")
    ax.set_ylabel("chargebacks_total")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return save_png(fig, path)
