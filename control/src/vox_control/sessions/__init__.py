"""Streaming session engines: WebSocket STT/TTS, pipecat realtime, and the protocols to come."""
