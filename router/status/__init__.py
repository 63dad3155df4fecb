"""The supervisor's view of the floor: one snapshot (`snapshot`), shown as a page on the
daemon's HTTP listener (`page`, `web`) and as `omnirouter status` (`command`).

Nothing is imported here: the config imports `router.status.password`.
"""
