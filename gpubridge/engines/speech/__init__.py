"""Speech-to-text runtimes: Whisper through faster-whisper or transformers, and speaker
diarization on top of either."""
