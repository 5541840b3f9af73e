"""Helpers every stage shares: files, locks, progress, devices, downloads, warm processes."""
