"""A package, for "pkg.sub:app"."""
