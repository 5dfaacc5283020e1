"""Flotilla: an open platform kit for people who run their own Kubernetes fleets."""

__version__ = "0.1.0"
