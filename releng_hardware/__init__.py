"""releng-hardware: when each Taskcluster hardware worker was last seen doing work."""

__version__ = "1.0.0"
