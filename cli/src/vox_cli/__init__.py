"""Vox command line."""
