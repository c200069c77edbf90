"""Who is calling: tokens verified against an OpenID Connect issuer's keys, and a standard client
that gets them."""
