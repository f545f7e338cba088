"""Preload Redis from /machines JSON: `cat data.json | python preload_redis.py`."""

from releng_hardware.cli import preload

if __name__ == "__main__":
    preload()
