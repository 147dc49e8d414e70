"""filtervis: see what the filters of a convolutional network respond to."""

__version__ = "0.1.0"
