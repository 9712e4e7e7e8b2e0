"""Image generation and editing engines built on diffusers."""
