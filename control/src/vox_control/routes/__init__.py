"""HTTP routes: the native /api/* surface and the OpenAI-compatible /v1/* surface."""
