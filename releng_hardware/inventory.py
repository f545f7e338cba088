"""`python -m releng_hardware.inventory load|show`: the inventory command, as
`releng-hardware-inventory` runs it (cli.inventory): the same output and exit codes."""

from .cli import inventory

if __name__ == "__main__":
    inventory(prog_name="python -m releng_hardware.inventory")
