"""Video generation: text-to-video, image-to-video and image animation with diffusers."""
