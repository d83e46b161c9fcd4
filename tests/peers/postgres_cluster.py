"""The desk tests' PostgreSQL: one private cluster for the test session (see
``console.cli.bench.postgres``), emptied before each test that asks for ``desk_dsn``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from console.cli.bench.postgres import Cluster, ClusterError, private_cluster


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    try:
        with private_cluster() as cluster:
            yield cluster
    except ClusterError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def desk_dsn(postgres_cluster: Cluster) -> Iterator[str]:
    postgres_cluster.reset()
    yield postgres_cluster.dsn


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A cluster of the test's own, which it may stop and start."""
    try:
        with private_cluster("desk-pg-own-") as cluster:
            yield cluster
    except ClusterError as exc:
        pytest.fail(str(exc))
