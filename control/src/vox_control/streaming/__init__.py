"""WebSocket streaming: windowing, word-timestamp stitching, sentence splitting, framing."""
