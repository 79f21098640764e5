"""The web screen and JSON API (FastAPI, Jinja2 + HTMX): `create_app(settings, engine)`."""
