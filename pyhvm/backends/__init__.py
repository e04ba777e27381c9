"""The outside world: consoles, disk images, networks, displays."""
