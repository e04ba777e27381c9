"""Control plane: the QMP monitor socket (`--qmp`) and the clients that use it (`pyhvm top`).

It sits above machine/ (it drives a `Machine` through pause, resume, reset and stop) and
below nothing: the VMM core never imports it.
"""
