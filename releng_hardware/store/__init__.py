"""Redis: every key and Lua script (lua/), the stored encodings; atomic, monotonic writes; reads.

    history      the history entry: one run as a fixed-width string, encoded and decoded
    peers        a label's runs as stored (fixed-width lines), decoded; a run's peers counted
    keys         every key name, and the group and machine order member both languages build
    scripts      the Lua scripts: lua/*.lua parts after a prelude of Python's constants
    base         StorePart: the client, prefix and keys, settings, scripts; loads; Redis failures
    quarantines  quarantines, the turn to poll Taskcluster and the poll's status
    inventory    the inventory, replaced whole; the machine ids of a hostname
    labels       the labels failing lately; a machine's runs with their labels and peers
    index        the machine index and the machine order: built, judged, read; their replies
    machines     the machines: batch writes, loads, the sweep, reads; the Store of every part
"""
