"""Tiltfile evaluation: a Starlark interpreter, Tilt's built-ins, their errors (docs/dev.md).

Nothing is imported here, so ``flotilla dev --help`` never loads the interpreter.
"""
