"""The Flask app: its factory, the blueprints, the dashboard's templates and static files.

A blueprint imports no other blueprint: what two of them share is in appstate or responses
(request-level) or in views (pure), below them all.

    appstate     what create_app gives the views: store, settings, clock, version; app_state()
    responses    what every view shares: JSON answers and errors, strict query parsing, ETags,
                 JSON or CSV as asked, the paging defaults and headers
    api          blueprint: /machines, /machines/<id>, /summary
    labels       blueprint: /labels, the task labels failing on several machines (JSON, CSV)
    dockerflow   blueprint: /__lbheartbeat__, /__heartbeat__, /__version__
    dashboard    blueprint: the page at / (templates/, static/: no build step, nothing external)
    metrics      blueprint: /metrics (prometheus-client, a registry per scrape)
    openapi      blueprint: /openapi.json, built from the code's own constants
    app          create_app(config, redis=None): assembles the blueprints and error handlers
"""
