"""Releases from elsewhere: the syncer that imports them from an upstream Omaha server, and the
payload files this server downloads, verifies and serves (``--sync-from``, ``--host-packages``)."""
