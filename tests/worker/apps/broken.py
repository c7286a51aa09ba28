"""A module that fails to import, as a site with a bug does."""

print("broken-import-started")
raise RuntimeError("broken-import-marker")
