"""flask-mcsync's Alembic script directory: ``env.py``, the revision template and
``versions/``, on the branch ``mcsync`` with the version table ``mcsync_alembic_version``.
See :mod:`flask_mcsync.migrations`."""
