"""Quoted history and signatures in plain text, found line by line in one pass each."""

from __future__ import annotations

from ticketd.daemon.parsers import _reply_words as words

ATTRIBUTION_LINES = 3  # Gmail wraps "On …, Name <address> wrote:" over up to three lines
ATTRIBUTION_BLANKS = 10  # blank lines an attribution may leave above its quote
HEADER_WINDOW = 8  # a quoted header block's names sit within this many lines
SIGNATURE_PARTS = 4  # "-- " block, phone line, footer, sign-off: more is not a signature


# How strip_quotes found history: not at all, as ">" lines, or as a start it cut at: a
# separator or header block, or an attribution with nothing quoted below it. The last one is
# what text derived from HTML looks like (the blockquote lost its ">"), so the HTML may know better.
NONE, QUOTED, CUT, ATTRIBUTION = "", "quoted", "cut", "attribution"


def strip_quotes(lines: list[str]) -> tuple[list[str], str]:
    """The writer's lines, and how history was found (NONE, QUOTED, CUT or ATTRIBUTION).

    ">" lines go, with the attribution above them; what the writer wrote between them stays
    (interleaved and bottom-posted replies). A separator, an Outlook header block or an
    attribution with nothing quoted below it starts history that runs to the end.
    """
    kept: list[str] = []
    found = NONE
    gap = False  # a quote was just taken out
    for i, line in enumerate(lines):
        if _is_quoted(line):
            if not gap:
                _drop_attribution(kept)
            found, gap = QUOTED, True
            continue
        if _starts_history(lines, i):
            return kept, CUT
        span = _dated_attribution(lines, i)
        below = _next_text(lines, i + span)
        if span and not (below < len(lines) and _is_quoted(lines[below])):
            return kept, ATTRIBUTION
        if line.strip():
            gap = False
        elif gap and (not kept or not kept[-1].strip()):
            continue  # one blank line where a quote was taken out, not two
        kept.append(line)
    return kept, found


def _is_quoted(line: str) -> bool:
    return line.lstrip(" \t").startswith(">")


def _next_text(lines: list[str], start: int) -> int:
    while start < len(lines) and not lines[start].strip():
        start += 1
    return start


def _is_attribution(text: str) -> bool:
    return text.endswith(":") and words.ATTRIBUTION_VERB.search(text[-words.ATTRIBUTION_TAIL :]) is not None


def _opens_attribution(line: str) -> bool:
    return words.ATTRIBUTION_OPENER.match(line.lstrip("-* ")) is not None


def _dated_attribution(lines: list[str], i: int) -> int:
    """How many lines "On <date> … wrote:" takes from line i (0: none there).

    Without a quote below, only this form is taken as an attribution: "On Monday the printer
    wrote:" (no date) is the writer's own sentence.
    """
    first = lines[i].strip()
    if not first or len(first) > words.MAX_LINE or not _opens_attribution(first):
        return 0
    joined = ""
    for span, line in enumerate(lines[i : i + ATTRIBUTION_LINES], start=1):
        part = line.strip()
        if not part or _is_quoted(part) or len(joined) + len(part) > words.MAX_LINE:
            break
        joined = f"{joined} {part}" if joined else part
        if _is_attribution(joined):
            return span if any(c.isdigit() for c in joined) else 0
    return 0


def _drop_attribution(kept: list[str]) -> None:
    """Removes the attribution (and the blank lines) right above a quote that starts here.

    It may be wrapped over up to three lines: the longest tail that starts like an attribution
    ("On …", "Am …") wins, else the shortest that ends like one ("Name wrote:").
    """
    end = len(kept)
    while end and not kept[end - 1].strip() and len(kept) - end < ATTRIBUTION_BLANKS:
        end -= 1
    joined, best = "", 0
    for span in range(1, min(ATTRIBUTION_LINES, end) + 1):
        part = kept[end - span].strip()
        if not part or len(joined) + len(part) > words.MAX_LINE:
            break
        joined = f"{part} {joined}" if joined else part
        if _is_attribution(joined) and (not best or _opens_attribution(part)):
            best = span
    if best:
        del kept[end - best :]


def _starts_history(lines: list[str], i: int) -> bool:
    line = lines[i].strip()
    if not line or len(line) > words.MAX_LINE:
        return False
    if words.SEPARATOR.fullmatch(line) or words.FORWARD_INTRO.fullmatch(line):
        return True
    if words.RULE.fullmatch(line):
        return bool(_header_block(lines, _next_text(lines, i + 1)))
    meanings = _header_block(lines, i)
    # Right below the writer's last line only with From, date and subject all there.
    return len(meanings) >= 3 or (bool(meanings) and (i == 0 or not lines[i - 1].strip()))


def _header_block(lines: list[str], i: int) -> set[str]:
    """What the "From: … Sent: … To: … Subject: …" block at line i names, or nothing when there is none."""
    seen: set[str] = set()
    for j in range(i, min(len(lines), i + HEADER_WINDOW)):
        line = lines[j]
        if not line.strip():
            continue  # HTML turned into text puts blank lines between the headers
        match = words.HEADER_LINE.match(line[: words.HEADER_PREFIX])
        if match is None:
            break
        meaning = words.HEADER_NAMES.get(match.group(1).lower())
        if j == i and meaning not in ("from", "date"):
            return set()
        if meaning:
            seen.add(meaning)
    return seen if "from" in seen and seen & {"date", "subject"} else set()


def strip_signature(lines: list[str]) -> tuple[list[str], list[str]]:
    """The lines without the trailing signature, and the signature lines (possibly none).

    Trailing parts go one after the other, at most SIGNATURE_PARTS of them: a "-- " block, a
    phone's "Sent from my …" line, an underscore footer, a "-Name" sign-off.
    """
    end = _text_end(lines, len(lines))
    cut = end
    for _ in range(SIGNATURE_PARTS):
        start = _signature_start(lines, cut)
        if start is None:
            break
        cut = _text_end(lines, start)
    return lines[:cut], lines[cut:end]


def _text_end(lines: list[str], end: int) -> int:
    while end and not lines[end - 1].strip():
        end -= 1
    return end


def _signature_start(lines: list[str], end: int) -> int | None:
    """Where the last signature part of lines[:end] begins (lines[end - 1] is not blank)."""
    if not end:
        return None
    last = lines[end - 1].strip()
    if len(last) <= words.MOBILE_MAX and words.MOBILE.fullmatch(last):
        return end - 1
    if end > 1 and not lines[end - 2].strip() and words.DASH_SIGN_OFF.fullmatch(last) and last[1].isupper():
        return end - 1
    text_after = 0
    delimiter = None
    # From the end up: the topmost delimiter with a short enough block below it.
    for i in range(end - 1, -1, -1):
        if text_after > words.SIGNATURE_MAX_LINES:
            break
        line = lines[i].rstrip()
        if line in words.SIGNATURE_DELIMITER or (
            words.FOOTER_RULE.fullmatch(line) and (i == 0 or not lines[i - 1].strip())
        ):
            delimiter = i
        elif line.strip():
            text_after += 1
    return delimiter
