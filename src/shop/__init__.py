"""The reference shop: one folder per service, every one shaped alike."""
