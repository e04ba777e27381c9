"""Builds a PC from a configuration and owns its lifetime."""
