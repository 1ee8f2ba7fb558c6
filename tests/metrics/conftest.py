"""The e2e fixtures (a real server with both default models pulled), shared with tests/e2e."""

from tests.e2e.conftest import pulled, vox_server

__all__ = ["pulled", "vox_server"]
