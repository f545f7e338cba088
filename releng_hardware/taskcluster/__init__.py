"""Taskcluster's worker state: the client, the listener's poll, quarantine, lift and backfill.

    client       the official client: listWorkers (every page), getWorker, quarantineWorker;
                 bounded, checked calls; credentials never leave it
    poller       the listener's Taskcluster poll: quarantines into the store, on a thread, in turns
    quarantine   quarantine and lift from the command line: choosing machines, the safety limit
    backfill     lastseen backfilled from worker-manager's workers
"""
