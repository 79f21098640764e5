"""Routers of the web app, one module per screen or API resource (see `labintake.web.app`)."""
