"""Text rules with one home each: sentence splitting, subtitles."""
