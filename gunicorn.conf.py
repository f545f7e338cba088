"""gunicorn's settings file (read from the working directory): listen on PORT, 8080 by default.

The Procfile's --bind wins over this; it is for `gunicorn webserver:app` run by hand or by
Procfile.dev, so that PORT means the same everywhere.
"""

from releng_hardware.cli import load_config

bind = f"0.0.0.0:{load_config().port}"
