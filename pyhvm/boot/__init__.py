"""Loaders: put a kernel image into guest memory and say how to enter it."""
