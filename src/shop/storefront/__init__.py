"""The storefront: the shop's web site, a backend-for-frontend on the other services' API."""
