"""Deployment files generated from `cleave.toml` (Dockerfile, compose, kustomize), and their
commands."""
