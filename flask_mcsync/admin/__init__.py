"""The admin pages: a blueprint the extension registers under ``MCSYNC_URL_PREFIX``."""

from .blueprint import make_blueprint

__all__ = ["make_blueprint"]
