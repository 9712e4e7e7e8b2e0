"""Keep secrets out of what the database layer logs, at every level.

Bound parameters and result rows carry API key hashes, webhook secrets and payment data. The
engine is built with ``hide_parameters=True``: statements are still logged (at INFO, when an
operator asks for them), their parameters never, nor in exception messages. What remains is
logged at DEBUG: SQLAlchemy's result rows and the SQLite driver's trace of each call with its
parameters and results. The filter here drops those records, whatever level is configured.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

SQLITE_DRIVER_LOGGER = "aiosqlite"


class DropDebugRecords(logging.Filter):
    """Lets through only records above DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


DROP_DEBUG = DropDebugRecords()
"""One instance: adding it to a logger again changes nothing."""


def keep_secrets_out_of_logs(engine: AsyncEngine, *, sqlite: bool) -> None:
    """Drop the DEBUG records of ``engine`` (its result rows) and of the SQLite driver."""
    engine_logger = engine.sync_engine.logger
    # With ``echo`` on, SQLAlchemy wraps the logger; the records still pass through this one.
    logger = getattr(engine_logger, "logger", engine_logger)
    if isinstance(logger, logging.Logger):
        logger.addFilter(DROP_DEBUG)
    if sqlite:
        logging.getLogger(SQLITE_DRIVER_LOGGER).addFilter(DROP_DEBUG)
