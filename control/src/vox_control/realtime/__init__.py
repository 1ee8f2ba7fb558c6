"""Pipecat-compatible realtime TTS and STT protocols, independent of the transport serving them."""
