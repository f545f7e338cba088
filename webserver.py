"""The web dyno: `gunicorn webserver:app`."""

from releng_hardware.cli import wsgi_app

app = wsgi_app()
