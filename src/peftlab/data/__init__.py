"""Readers for local data files and hub datasets."""
