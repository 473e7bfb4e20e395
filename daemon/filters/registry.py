"""The filters an admin can name in ``[filters] pipeline``, by name."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ticketd.daemon.filters import Filter

if TYPE_CHECKING:
    from ticketd.daemon.metrics import Metrics

DEFAULT_PIPELINE = ("bounce", "autoreply", "senders")


def _modules() -> dict[str, tuple[ModuleType, str]]:
    from ticketd.daemon.filters import autoreply, bounce, senders, spam

    return {"bounce": (bounce, "BounceFilter"), "autoreply": (autoreply, "AutoReplyFilter"),
            "senders": (senders, "SendersFilter"), "spam": (spam, "SpamFilter")}


def known_filters() -> tuple[str, ...]:
    return tuple(_modules())


@dataclass(frozen=True)
class FiltersConfig:
    pipeline: tuple[str, ...]
    concurrency: int  # messages filtered at once (spamd calls in flight)
    settings: dict[str, Any]  # filter name -> that module's settings object


def load_filters(section) -> FiltersConfig:  # type: ignore[no-untyped-def]
    """Read ``[filters]``; an unknown or repeated name stops start-up and says which."""
    modules = _modules()
    pipeline = section.get("pipeline", list, list(DEFAULT_PIPELINE), expected="an array of filter names")
    for i, name in enumerate(pipeline):
        if name not in modules:
            section.fail(f"pipeline[{i}]", "one of " + ", ".join(modules), name)
        if name in pipeline[:i]:
            section.fail(f"pipeline[{i}]", f"each filter once ({name!r} is named twice)", name)
    concurrency = section.positive("concurrency", int, 4)
    settings = {name: modules[name][0].load_settings(section.sub(name, {})) for name in modules}
    section.done()
    return FiltersConfig(tuple(pipeline), concurrency, settings)


def build_filters(config: FiltersConfig, metrics: Metrics | None = None) -> list[Filter]:
    """The pipeline's filters; the spam filter reports spamd's errors and latency to ``metrics``."""
    modules = _modules()
    built: list[Filter] = []
    for name in config.pipeline:
        unit = getattr(modules[name][0], modules[name][1])
        extra = {"stats": metrics.spamd} if name == "spam" and metrics is not None else {}
        built.append(unit(config.settings[name], **extra))
    return built
