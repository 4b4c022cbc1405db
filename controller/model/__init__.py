"""Data models of the controller's pure core (desired state, observed state).

Nothing here performs I/O; loaders and API clients build these values at the edges.
"""
