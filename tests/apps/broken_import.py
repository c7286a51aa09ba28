"""An app whose import fails: the shim must answer 500 and log this."""

raise RuntimeError("marker-import-failure")
