"""Bundled catalog: one JSON file per model, read with importlib.resources."""
