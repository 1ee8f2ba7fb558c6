"""Vox nodes behind Ray Serve: each replica is a `vox serve` node; models go where they live."""
