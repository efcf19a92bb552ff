"""OPC UA server of the running service (see server.py for the address space)."""
