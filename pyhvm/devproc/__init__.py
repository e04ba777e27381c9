"""Device models in their own process (`--device-process`): the placement Xen's HVM guests
had with qemu-dm, and how careful VMMs confine device code today.

- protocol.py: device groups, register ranges, operations and events;
- ring.py: the shared-memory request ring (our own form of Xen's ioreq page);
- channel.py: the VMM's end (requests, waiting, events, crash containment);
- proxy.py: proxies that plug into the same bus slots as the local device models;
- host.py: the machine's view: which groups run where, interrupt routing, failure policy;
- launcher.py: starting, asking and stopping the process;
- server.py, resources.py, sandbox.py: the device process itself.
"""
