"""The only layer with threads: vCPU threads, the event loop, exit dispatch."""
