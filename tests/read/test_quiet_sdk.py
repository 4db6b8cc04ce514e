"""The azure SDK's background endpoint health check logs a traceback at ERROR when it runs after its
client closed; neither a read service (ReadClient) nor a command shows it."""

from __future__ import annotations

import logging

from azure.cosmos import _global_endpoint_manager

import projectors.read.client  # noqa: F401  (its import quiets the SDK's health-check logger)
from projectors.cli import quiet_libraries


def test_the_sdks_health_check_logger_is_quiet_below_critical() -> None:
    sdk_logger = _global_endpoint_manager.logger  # the logger the SDK really writes to
    assert sdk_logger.getEffectiveLevel() == logging.CRITICAL
    sdk_logger.setLevel(logging.NOTSET)
    quiet_libraries()
    assert sdk_logger.getEffectiveLevel() == logging.CRITICAL
