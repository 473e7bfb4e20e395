"""Quoted history and signatures in plain text, found line by line in one pass each."""

from __future__ import annotations

from daemon.parsers import _reply_words as words

ATTRIBUTION_LINES = 3  # Gmail wraps "On …, Name <address> wrote:" over up to three lines
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
    gap = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _is_quoted(line):
            found, gap = QUOTED, True
            i += 1
            continue
        if _starts_history(lines, i):
            return kept, CUT
        span, dated = _attribution(lines, i)
        if span:
            below = _next_text(lines, i + span)
            if below < len(lines) and _is_quoted(lines[below]):
                found, gap = QUOTED, True
                i = below
                continue
            if dated:
                return kept, ATTRIBUTION
        if line.strip():
            gap = False
        elif gap and (not kept or not kept[-1].strip()):
            i += 1  # one blank line where a quote was taken out, not two
            continue
        kept.append(line)
        i += 1
    return kept, found


def _is_quoted(line: str) -> bool:
    return line.lstrip(" \t").startswith(">")


def _next_text(lines: list[str], start: int) -> int:
    while start < len(lines) and not lines[start].strip():
        start += 1
    return start


def _attribution(lines: list[str], i: int) -> tuple[int, bool]:
    """(number of lines, whether it opens with a date) of an attribution at line i, else (0, False)."""
    first = lines[i].strip()
    if not first or len(first) > words.MAX_LINE:
        return 0, False
    opener = words.ATTRIBUTION_OPENER.match(first) is not None
    joined = ""
    for span in range(1, ATTRIBUTION_LINES + 1):
        if i + span > len(lines):
            break
        part = lines[i + span - 1].strip()
        if not part or _is_quoted(part):
            break
        joined = f"{joined} {part}" if joined else part
        if len(joined) > words.MAX_LINE or (span > 1 and not opener and "@" not in first):
            break  # only a header that starts like one ("On …", "Name <address> …") is wrapped
        if joined.endswith(":") and words.ATTRIBUTION_VERB.search(joined[-words.ATTRIBUTION_TAIL :]):
            # Without a quote below, only "On <date> … wrote:" is taken as an attribution:
            # "On Monday the printer wrote:" is the writer's own sentence.
            return span, opener and any(c.isdigit() for c in joined)
    return 0, False


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
