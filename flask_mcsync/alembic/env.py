"""Alembic's environment for flask-mcsync's own revisions.

``flask mcsync init-db`` (:func:`flask_mcsync.migrations.upgrade`) runs it on the app's
connection, passed in ``config.attributes["connection"]``. A host's Flask-Migrate never
runs this file: it runs our revisions from its own ``env.py``.
"""

from alembic import context

from flask_mcsync.migrations import configure_context

configure_context(context, context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
