"""Benchmark of the listener drain and the HTTP API against the local RabbitMQ and Redis.

Run `python -m bench --help` from the repository root.
"""
