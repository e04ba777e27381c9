"""The tuning toolkit: a cheap recorder every layer reports to, and the tools that read it."""
