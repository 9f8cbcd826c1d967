"""ParaDrop edge node daemon and cloud controller."""

__version__ = "0.1.0"
