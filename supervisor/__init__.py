"""The control path: protocol state, rooms, the control API and the worker pool. Never a packet."""
