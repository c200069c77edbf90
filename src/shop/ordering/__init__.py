"""ordering service."""
