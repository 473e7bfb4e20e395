"""Commands in agent mail: the ``#word ...`` lines at the top of what the agent wrote.

Read from the new text only (quoted history removed), so a command quoted from an earlier mail
never runs again. The block ends at the first line that is not a command; blank lines before
and inside it are skipped. Parsing checks the form of each command; whether an assignee or a
queue exists is the config's question (daemon.agent_reply). Any error means none of the
commands runs: the agent is told why, and nothing is half-done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

STATUSES = ("open", "pending", "solved", "closed")
PRIORITIES = ("P1", "P2", "P3", "P4")
NAMES = ("status", "priority", "assign", "queue", "note", "cc", "away", "back")
# "#word" and the rest of the line; "#1 ..." or "# heading" are text, not commands.
_LINE = re.compile(r"^\s*#([A-Za-z][A-Za-z_-]*)\b[ \t]*(.*?)\s*$")
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
MAX_LINES = 20  # a command block longer than this is text that happens to start with "#"


@dataclass(frozen=True)
class Command:
    name: str  # one of NAMES
    value: str = ""  # normalised: "pending", "P2", an address, a queue name, "add x@y"
    line: str = ""  # as the agent wrote it, for the explanation


@dataclass(frozen=True)
class Parsed:
    commands: tuple[Command, ...] = ()
    errors: tuple[str, ...] = ()
    text: str = ""  # the new text without the command lines: what the customer may read
    cc: tuple[tuple[str, str], ...] = field(default=())  # ("add" | "remove", address)

    @property
    def note(self) -> bool:
        return any(c.name == "note" for c in self.commands)

    def value(self, name: str) -> str | None:
        """The last value given for ``name`` (a later line wins), or None."""
        found = [c.value for c in self.commands if c.name == name]
        return found[-1] if found else None


def parse(new_text: str) -> Parsed:
    """The command block at the top of ``new_text``, checked for form, and the text after it."""
    lines = new_text.replace("\r\n", "\n").split("\n")
    commands: list[Command] = []
    errors: list[str] = []
    cc: list[tuple[str, str]] = []
    index = 0
    while index < len(lines) and len(commands) + len(errors) < MAX_LINES:
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        match = _LINE.match(line)
        if match is None:
            break
        index += 1
        word, rest = match.group(1).lower(), match.group(2)
        command, error = _one(word, rest, _shown(line.strip()))
        if error:
            errors.append(error)
        elif command is not None:
            commands.append(command)
            if command.name == "cc":
                action, _, address = command.value.partition(" ")
                cc.append((action, address))
    text = "\n".join(lines[index:]).strip("\n")
    return Parsed(tuple(commands), tuple(errors), text, tuple(cc))


def _shown(line: str) -> str:
    """The line as an explanation quotes it: short (a pasted essay is not repeated back)."""
    return line if len(line) <= 100 else line[:100] + "..."


def _one(word: str, rest: str, line: str) -> tuple[Command | None, str]:
    if word not in NAMES:
        return None, f"{line!r}: unknown command #{word[:30]} (known: {', '.join('#' + n for n in NAMES)})"
    value = rest.strip()
    if word == "status":
        if value.lower() not in STATUSES:
            return None, f"{line!r}: #status takes one of {' | '.join(STATUSES)}"
        return Command(word, value.lower(), line), ""
    if word == "priority":
        normal = value.upper() if value.upper().startswith("P") else f"P{value}"
        if normal not in PRIORITIES:
            return None, f"{line!r}: #priority takes one of {' | '.join(PRIORITIES)}"
        return Command(word, normal, line), ""
    if word in ("assign", "queue"):
        if not value:
            return None, f"{line!r}: #{word} needs {'an agent address or name' if word == 'assign' else 'a queue name'}"
        return Command(word, value, line), ""
    if word in ("note", "back"):
        if value:
            return None, f"{line!r}: #{word} takes nothing after it"
        return Command(word, "", line), ""
    if word == "cc":
        action, _, address = value.partition(" ")
        address = address.strip().strip("<>")
        if action.lower() not in ("add", "remove") or not _ADDRESS.match(address):
            return None, f"{line!r}: #cc takes add ADDRESS or remove ADDRESS"
        return Command(word, f"{action.lower()} {address.lower()}", line), ""
    return _away(value, line)


def _away(value: str, line: str) -> tuple[Command | None, str]:
    """``#away`` (until ``#back``) or ``#away until YYYY-MM-DD``: the agent gets no new tickets."""
    if not value:
        return Command("away", "", line), ""
    words = value.split()
    if len(words) == 2 and words[0].lower() == "until":
        try:
            return Command("away", date.fromisoformat(words[1]).isoformat(), line), ""
        except ValueError:
            pass
    return None, f"{line!r}: #away takes nothing or until YYYY-MM-DD"


def away_until(command: Command) -> datetime | None:
    """The end of an ``#away``: the start of the day after the date given (UTC), or None (open-ended)."""
    if not command.value:
        return None
    day = date.fromisoformat(command.value) + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
