"""Sans-I/O device models.

Nothing here imports os, socket, threading, time or the KVM binding: a model's effects leave
through the small ports of `pyhvm.devices.base`, handed in at construction, so tests drive a
model register by register with fakes and every placement reuses the same class.
"""
