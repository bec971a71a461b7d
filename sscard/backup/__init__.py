"""Backup and restore of a data directory: consistent snapshots, encrypted and authenticated.

The foundation owns this because a data directory spans the CA, RA, KMC and audit data while
those packages may not import each other: everything here works on files and database URLs,
never on another package's models.
"""
