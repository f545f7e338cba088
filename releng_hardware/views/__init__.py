"""What is served, from records: the machine as JSON, filters, summary, the reads behind a view.

    fields       a machine as the API serves it: one table of its fields (JSON, CSV, OpenAPI)
    derived      what stored derived data is keyed by: a digest of the code that made it
    labels       the task labels failing on several machines (/labels, dashboard, /metrics)
    metric_names the names of /metrics' families (the exposition and /openapi.json)
    fleet        pure views: a machine as JSON, filters, sorting, summary, CSV, listener health
    machine_index  the machine index's rules: a machine's group and judgement; /summary from
                 the index's per-group figures (pure)
    reads        the reads behind the views: the store read once, the pure views applied at now
"""
