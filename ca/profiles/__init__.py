"""The shipped certificate profiles (TOML data files; loaded by ``ca.profile``)."""
