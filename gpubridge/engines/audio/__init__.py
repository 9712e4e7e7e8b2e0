"""Local audio generation runtimes: text to speech, expressive speech, music and voice cloning."""
