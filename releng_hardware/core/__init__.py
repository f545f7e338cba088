"""The pure core: identifiers, times, settings, plain records and the rules judged on them; no I/O.

    identifiers  Taskcluster's identifier rule, the machine id <dc>:<host>, a queue's name, a task's link
    times        the lastseen format, time parsing, durations, the clock-skew limit
    config       settings: parsed once from a mapping, documented, verified at start-up
    records      plain data, no I/O: MachineRecord, Run, a run's outcome code
    problems     the problem rules: pure functions of a machine's facts
    events       pure parsing: a queue message in, a WorkerEvent / PendingEvent / Skip out
    params       query parameter values, parsed strictly (BadParameter names the parameter)
    timeline     a machine's history of changes: events, their ids and encoding, derived from plain values
"""
