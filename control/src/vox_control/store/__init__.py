"""Models at rest: the catalog registry, the on-disk store, and the sources that fill it."""
