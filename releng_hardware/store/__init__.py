"""Redis: every key and Lua script (lua/), the stored encodings; atomic, monotonic writes; reads.

    history      the history entry: one run as a fixed-width string, encoded and decoded
    peers        a label's runs as stored (fixed-width lines), decoded; a run's peers counted
    keys         every key name, and the group and machine order member both languages build
    scripts      the Lua scripts: lua/*.lua parts after a prelude of Python's constants
    machines     the Store: every Redis key and script; batch writes, the machine index, reads
"""
