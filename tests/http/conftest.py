"""The HTTP contract tests: PostgreSQL for the shared replay memory; the RA rig (CA, KMC, RA)
for the services."""

from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)
from tests.ra.conftest import rig  # noqa: F401  (fixture)
