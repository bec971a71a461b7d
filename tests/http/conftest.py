"""The HTTP contract tests: PostgreSQL for the shared replay memory."""

from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)
