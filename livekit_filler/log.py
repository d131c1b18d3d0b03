"""The package logger: static messages, data in ``extra``, no user content in messages."""

from __future__ import annotations

import logging

logger = logging.getLogger("livekit_filler")
