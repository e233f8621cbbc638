"""Quiet, structured logs: one line per event, ``key=value`` fields, warnings and errors only by default."""

from __future__ import annotations

import logging
import sys
import time

LEVELS = {"default": logging.WARNING, "verbose": logging.INFO, "trace": logging.DEBUG}


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        message = record.getMessage().replace('"', "'")
        line = f'ts={stamp} level={record.levelname.lower()} logger={record.name} msg="{message}"'
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "default") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("isengard").setLevel(LEVELS[level])
    # Libraries stay at warnings unless tracing.
    for name in ("hypercorn", "pynetdicom", "quart"):
        logging.getLogger(name).setLevel(logging.DEBUG if level == "trace" else logging.WARNING)
