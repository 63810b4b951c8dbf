"""pointwatch agent: runs on a service point's terminal and checks 专网专机专用, the core network and devices."""

__version__ = "0.1.0"
