"""The running dev loop: the engine and the adapters it drives (docker, Kubernetes, processes).

The engine hands its collaborators a ``Session`` (see ``session.py``); none imports the engine.
"""
