"""The API tests' RA: the RA tests' rig fixture (CA, KMC, audit log, RA; one per module)."""

from tests.ra.conftest import rig  # noqa: F401  (fixture)
