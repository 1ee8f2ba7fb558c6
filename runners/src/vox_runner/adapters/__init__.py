"""Built-in adapters; each imports its model library lazily so this package imports without them."""
