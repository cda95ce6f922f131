"""The quickstart GitHub App: ``app.py`` is the app, ``python -m examples.quickstart`` runs it."""
