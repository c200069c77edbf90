"""identity service: the OpenID Connect provider."""
