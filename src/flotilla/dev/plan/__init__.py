"""The pure part of the dev loop: the model, manifests, build contexts, rendering and decisions.

No module here talks to docker, Kubernetes, subprocesses or the file watcher (import-linter
holds it).
"""
