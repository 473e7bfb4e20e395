"""A sleep that an event cuts short: how the daemon's periodic tasks wait for their next round."""

from __future__ import annotations

import asyncio


async def pause(event: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``event`` is set meanwhile; True if it was (time to stop)."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True
