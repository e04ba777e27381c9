"""`pyhvm bench`: measurements of pyhvm against a reference (a C loop, QEMU), same run."""
