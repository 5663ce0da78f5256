"""The revisions of the ``mcsync_*`` tables (branch ``mcsync``). Alembic loads each file
on its own, so a revision imports what it needs by its absolute name."""
