"""The caseworkers' dashboard, a Starlette application of its own: see app.py and
docs/dashboard.md."""
