"""The running service: the pipeline threads, the service that wires stages together, the
supervisor, health, control socket, logs and the instance lock.
"""
