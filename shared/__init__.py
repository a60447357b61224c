"""Code used by the supervisor, the workers and applications (wire formats, protocol, RTP)."""

__version__ = "0.1.0"
