"""Displays: where rendered frames of the guest's screen go (PNG files, VNC, the web)."""
