"""Notebook 07's ttl/lookback panel: at one request time T, every account asks for its latest ``amount``
under a chosen ttl and for its transaction count over a chosen lookback window. ``panel_update`` is the
plain callback (tests call it directly); ``make_panel`` only wires widgets to it.

The panel works on a private in-memory copy of the transactions (:func:`panel_store`), so changing the
ttl there (recorded in place by ``FeatureStore.apply``) never touches the notebook's own store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import FeatureStoreError
from workbench.features.store import FeatureStore
from workbench.features.view import FeatureView
from workbench.features.windows import window_label
from workbench.plotting import png_bytes, pyplot, show_png

VIEW = "transactions"
CHOICES = {label: d for label, d in (("1h", timedelta(hours=1)), ("6h", timedelta(hours=6)),
                                      ("1d", timedelta(days=1)), ("3d", timedelta(days=3)),
                                      ("7d", timedelta(days=7)), ("14d", timedelta(days=14)),
                                      ("30d", timedelta(days=30)))}


@dataclass
class PanelData:
    """The panel's private store, the request rows (every account at ``at``) and who had a transaction by then."""

    store: FeatureStore
    keys: pd.DataFrame
    at: pd.Timestamp
    seen: np.ndarray   # per key row: the account had a transaction at or before ``at``


def panel_store(transactions: pd.DataFrame, at: str | pd.Timestamp) -> PanelData:
    """Copy ``transactions`` (``account_id``, ``amount``, ``event_timestamp``) into an in-memory store."""
    missing = {"account_id", "amount", "event_timestamp"} - set(transactions.columns)
    if missing:
        raise FeatureStoreError(f"ttl/lookback panel: transactions lack column(s) {sorted(missing)}")
    store = FeatureStore()
    store.apply(FeatureView(VIEW, ["account_id"], ["amount"]),
                transactions[["account_id", "amount", "event_timestamp"]])
    at = pd.Timestamp(at)
    accounts = np.sort(transactions["account_id"].unique())
    seen = np.isin(accounts, transactions.loc[transactions["event_timestamp"] <= at, "account_id"].unique())
    keys = pd.DataFrame({"account_id": accounts, "event_timestamp": at})
    return PanelData(store, keys, at, seen)


def panel_update(data: PanelData, ttl: timedelta, lookback: timedelta, axes: Any = None) -> dict[str, Any]:
    """Serve every account at ``data.at`` with ``ttl`` (point-in-time join, ttl inclusive) and count its
    transactions over ``lookback`` (window ending at ``at``, both ends inclusive); draw on ``axes`` (two
    axes) when given. Returns the status counts and the window-count summary."""
    data.store.apply(FeatureView(VIEW, ["account_id"], ["amount"], ttl=ttl))
    served = data.store.get_historical_features(data.keys, [f"{VIEW}:amount"])["amount"].notna().to_numpy()
    label = window_label(lookback)
    counts = data.store.get_window_features(data.keys, f"{VIEW}:amount", {label: lookback}, ["count"])
    counts = counts[f"amount_count_{label}"].to_numpy(int)
    status = {"present": int(served.sum()), "expired": int((data.seen & ~served).sum()),
              "missing": int((~data.seen).sum())}
    row = {"ttl": window_label(ttl), "lookback": label, **status,
           "mean_count": float(counts.mean()), "active_share": float((counts > 0).mean())}
    if axes is not None:
        _draw(axes, row, counts, data.at)
    return row


def _draw(axes: Any, row: dict[str, Any], counts: np.ndarray, at: pd.Timestamp) -> None:
    left, right = axes
    names = ["present", "expired", "missing"]
    bars = left.bar(names, [row[n] for n in names], color=["tab:blue", "tab:orange", "tab:grey"])
    left.bar_label(bars, fontsize=9)
    left.set_ylabel("accounts")
    left.set_title(f"amount served at T with ttl {row['ttl']}", fontsize=10)
    right.hist(counts, bins=np.arange(counts.max() + 2) - 0.5, color="tab:green")
    right.set_xlabel(f"transactions in the {row['lookback']} before T")
    right.set_ylabel("accounts")
    right.set_title(f"lookback {row['lookback']}: mean {row['mean_count']:.2f}, "
                    f"{row['active_share']:.1%} active", fontsize=10)
    left.figure.suptitle(f"Every account at T = {at}", fontsize=10)


def make_panel(transactions: pd.DataFrame, at: str | pd.Timestamp, ttl: str = "7d", lookback: str = "1d") -> Any:
    """ttl and lookback sliders, an apply button (each apply is one join) and the figure; returns the box."""
    import ipywidgets as w

    plt = pyplot()
    data = panel_store(transactions, at)
    ttl_slider = w.SelectionSlider(options=list(CHOICES), value=ttl, description="ttl")
    lookback_slider = w.SelectionSlider(options=list(CHOICES), value=lookback, description="lookback")
    button = w.Button(description="apply")
    out = w.Output()

    def redraw(*_: Any) -> None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        row = panel_update(data, CHOICES[ttl_slider.value], CHOICES[lookback_slider.value], axes=axes)
        fig.tight_layout()
        show_png(out, png_bytes(fig), f"ttl {row['ttl']}: {row['present']} present, {row['expired']} expired, "
                 f"{row['missing']} missing; lookback {row['lookback']}: mean count {row['mean_count']:.2f}")

    button.on_click(redraw)
    redraw()
    return w.VBox([w.HBox([ttl_slider, lookback_slider, button]), out])
