"""What the commands read and make: preload and inventory files, simulated traffic, a fake Taskcluster.

    preload      /machines JSON in, validated, for the store to load
    inventory    the expected inventory: JSON, CSV or lines in, validated; the load rules
    simulate     realistic queue messages for a made-up fleet
    fake_taskcluster  a local Taskcluster (worker routes, Hawk check, faults) for tests and scripts/run
"""
