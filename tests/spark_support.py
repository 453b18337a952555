"""Shared pieces of the feature-store tests that run on both offline engines: one SparkSession per test
module (a start costs seconds), and the ``engine`` parameter (duckdb, spark)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def spark_session():
    from workbench.features import spark_engine

    yield spark_engine.session(conf=spark_engine.SMALL_DATA)
    spark_engine.stop_session()


@pytest.fixture(params=["duckdb", "spark"])
def engine(request) -> str:
    if request.param == "spark":
        request.getfixturevalue("spark_session")
    return request.param
