"""One logger naming convention: every module logs under the `champion_gateway` root, as
`champion_gateway.<module path>`, so one handler or level on the root covers the project
and nothing else (Ray's and MLflow's loggers stay separate)."""

from __future__ import annotations

import logging

ROOT = "champion_gateway"


def get_logger(module: str) -> logging.Logger:
    """The logger of `module` (pass `__name__`)."""
    return logging.getLogger(f"{ROOT}.{module}")
