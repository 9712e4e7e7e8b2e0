"""Image-to-image utilities: background removal, super-resolution and face restoration."""
