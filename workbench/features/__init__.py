"""Feature store on DuckDB: versioned offline tables, point-in-time joins, window features, an online store."""

from workbench.errors import FeatureStoreError
from workbench.features.online import OnlineResponse
from workbench.features.store import FeatureStore
from workbench.features.view import FeatureView

__all__ = ["FeatureStore", "FeatureView", "FeatureStoreError", "OnlineResponse"]
