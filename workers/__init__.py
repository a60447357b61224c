"""The data path: sockets, crypto and forwarding, one process per CPU."""
