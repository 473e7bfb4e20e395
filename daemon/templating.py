"""Sandboxed Jinja2 templates for mail we write."""

from __future__ import annotations

from pathlib import Path

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment


def load_template(path: Path) -> "Template":
    """Compile ``path`` now, so a broken template stops start-up, not a reply."""
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Template(env.from_string(source), path)
    except TemplateError as exc:
        raise ValueError(f"{path}: line {getattr(exc, 'lineno', '?')}: {exc}") from None


class Template:
    def __init__(self, compiled: object, path: Path) -> None:
        self.compiled = compiled
        self.path = path

    def render(self, **values: object) -> str:
        return self.compiled.render(**values)  # type: ignore[attr-defined, no-any-return]
