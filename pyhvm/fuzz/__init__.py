"""`pyhvm fuzz`: hostile-guest fuzzing of the device models, without KVM.

A program is a list of ops (`ops.py`): port and MMIO accesses, PCI configuration cycles
through 0xCF8/0xCFC, guest-memory fills (so DMA descriptors and rings are attacker-made),
virtual-clock steps and backend events. `harness.py` runs a program against a configuration
(`configs.py`: one device alone, or the whole PC) wired to a checking guest memory
(`memory.py`) and a virtual clock (`clock.py`), and checks the oracles of `oracles.py` after
every op. `engine.py` generates and mutates programs (coverage-guided when coverage.py or
atheris is installed), minimizes failures and writes them as text reproducers that
`pyhvm fuzz --replay FILE` runs again.
"""
