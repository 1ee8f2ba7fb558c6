"""Tests of the model registry, the store and the model sources."""
