"""The listener dyno: `python listen_to_pulse.py`."""

from releng_hardware.cli import listen

if __name__ == "__main__":
    listen()
