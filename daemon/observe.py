"""What lets others watch the running daemon: the mailbox health rows and, with [metrics], the endpoint."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ticketd.daemon.health import HealthWriter

if TYPE_CHECKING:
    from ticketd.daemon.config import Config
    from ticketd.daemon.fetcher import MailboxWorker
    from ticketd.daemon.metrics_http import Endpoint
    from ticketd.daemon.pipeline import Processor

log = logging.getLogger("ticketd.status")

STOP_WAIT = 10.0  # seconds the last write may take at the stop (a locked database): then it is left


class Observers:
    """The health writer's task and the endpoint, for one run of the daemon."""

    def __init__(self, config: Config, processor: Processor, workers: list[MailboxWorker],
                 holder: str | None = None) -> None:
        self.config = config
        self.holder = holder  # this instance's id (daemon.leases)
        self.processor = processor
        self.boxes = [worker.health for worker in workers]
        self.endpoint: Endpoint | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve the endpoint (EndpointError if it cannot be), then start writing."""
        metrics = None
        if self.config.metrics is not None:
            from ticketd.daemon.metrics_http import Endpoint  # prometheus_client only where [metrics] asks for it

            self.endpoint = Endpoint(self.config.metrics, self.processor.metrics, self.boxes)
            await self.endpoint.start()
            metrics = self.processor.metrics  # the database's figures are read only for a reader
        writer = HealthWriter(self.boxes, self.processor.write_turn, metrics, holder=self.holder)
        self._task = asyncio.create_task(writer.run(self._stop), name="health")

    async def stop(self) -> None:
        """Once the workers have stopped: the last write then says "not connected"."""
        self._stop.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=STOP_WAIT)
            if not done:
                log.warning("mailbox status: the last write did not finish within %.0f s", STOP_WAIT)
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self.endpoint is not None:
            await self.endpoint.stop()
