"""What the DMU and the TSM share: one way to load settings, guard requests, open the database and migrate it.

- ``settings``: ``ServiceSettings`` (the fields and the security policy both services have) and
  ``load_settings`` (defaults < YAML file < environment < flags; unknown keys are an error everywhere).
- ``security``: token secrets (length + entropy, one placeholder list), scopes, who a bearer token is.
- ``guard``: ASGI middleware that refuses unauthenticated requests and oversized bodies before a
  byte of the body is read.
- ``auth``: the FastAPI dependency that checks a route's scope (and the job or mixture it touches).
- ``db``: the engine, the session factory and the constraint naming convention.
- ``migrations``: the Alembic runner and the one ``env.py`` implementation.

Only ``settings`` and ``security`` import without the ``services`` extra.
"""
