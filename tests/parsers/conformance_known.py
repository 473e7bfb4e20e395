"""Every field where our parse disagrees with a peer's expectation, and why.

Each reason starts with its kind:
- "opinion:" both readings are defensible; ours is the one we want for tickets.
- "peer:" the peer's output is wrong or lossy (undecoded text, mojibake, a made-up value).
A disagreement that is our bug does not belong here: fix the parser instead.
"""

from __future__ import annotations

KNOWN: dict[tuple[str, str, str], str] = {
    # --- Zammad --------------------------------------------------------------------------
    ("zammad", "mail016", "from_email"): "opinion: the mail has no From; Zammad puts Reply-To there, "
    "we leave from_ empty (reply_to holds it; the ticket layer chooses the requester)",
    (
        "zammad",
        "mail018",
        "subject",
    ): "peer: Zammad leaves charset unicode-1-1-utf-7 undecoded ('+ANw-'); we decode it (Ü)",
    ("zammad", "mail018", "body"): "peer: same UTF-7 body left undecoded by Zammad",
    (
        "zammad",
        "mail019",
        "from_email",
    ): "opinion: From is '\"我\" <>' (no address); Zammad substitutes Reply-To, we do not",
    (
        "zammad",
        "mail019",
        "from_name",
    ): "opinion: we keep the From display name 我 of the address-less From; Zammad drops it",
    ("zammad", "mail021", "body"): "opinion: a stray 0xEF in UTF-8 text; we read stray bytes as windows-1252 (ï), "
    "Zammad's guess gives windows-1250 (ď); the sender meant neither (a lost ligature)",
    ("zammad", "mail023", "body"): "opinion: an undeclared 8-bit GB18030 line; Zammad detects the charset "
    "statistically, we follow the brief (UTF-8, else windows-1252) and ship no charset detector",
    ("zammad", "mail046", "from_name"): "peer: Zammad's name is mojibake (ÎäŔźłÉ); we decode the raw GB2312 bytes "
    "with the charset the attached original declares (武兰成)",
    ("zammad", "mail054", "body"): "peer: Zammad loses the headers after an unindented folded line and shows "
    "'no visible content'; we repair the header block and show the text",
    (
        "zammad",
        "mail076",
        "from_email",
    ): "peer: Zammad keeps the stray '>' of '\"Millions ...\"@example.com>' in the address",
    ("zammad", "mail076", "from_name"): "peer: Zammad makes a display name out of the broken address; there is none",
    ("zammad", "mail087", "from_email"): "opinion: 'From: Test test@example.com' (no brackets); we read name Test, "
    "address test@example.com; Zammad keeps 'test test@example.com' as the address",
    ("zammad", "mail087", "from_name"): "opinion: see from_email: our display name is 'Test'",
    ("zammad", "mail087", "body"): "opinion: a part without Content-Type is text/plain (RFC 2045 5.2), so it is "
    "the body for us; Zammad shows no body and makes it an attachment named 'file'",
    (
        "zammad",
        "mail087",
        "attachment_content",
    ): "opinion: the same untyped part; it is our body text, not an attachment",
    ("zammad", "mail102", "attachment_name"): "peer: two parts share a name; Zammad renames the second "
    "('...091.00.38.png'), we keep the name the sender gave",
    ("zammad", "mail105", "body"): "opinion: multipart/mixed without any boundary line; we show its text as the "
    "body (RFC 2046 gives it no parts), Zammad shows nothing",
    # --- Stalwart (messages with every CR removed; malformed/ is smoke-tested only) ---------
    ("stalwart", "rfc/000.eml", "attachment_content"): "opinion: RFC 2046's example has placeholder prose in "
    "base64 parts; Stalwart keeps the undecodable text, we decode what base64 there is",
    ("stalwart", "thirdparty/000.eml", "body_text"): "opinion: multipart/alternative with two text/plain "
    "alternatives; we show one form (the first), Stalwart concatenates both",
    ("stalwart", "thirdparty/001.eml", "body_text"): "opinion: as thirdparty/000: one alternative, not all of them",
    ("stalwart", "thirdparty/002.eml", "body_text"): "opinion: a base64 part of junk ('?garbage'); we decode it "
    "leniently into the text, Stalwart keeps it undecoded as an attachment",
    ("stalwart", "thirdparty/002.eml", "attachment_content"): "opinion: the same junk base64 part",
    ("stalwart", "thirdparty/005.eml", "body_text"): "opinion: 'invalid--1--' has the close delimiter glued to "
    "text; RFC 2046 needs it at a line start, so we keep it as text; Stalwart ends the part there",
    # --- Mime4j ----------------------------------------------------------------------------
    ("mime4j", "mimetools-testmsgs/multi-frag.msg", "attachment_content"): "opinion: base64 followed by a "
    "broken boundary line ('XXXXXX--unique-boundary-2--'); junk after the data decodes differently (401 vs 399 B)",
    ("mime4j", "testmsgs/malformedHeader-noheader.msg", "parse"): "opinion: no header block at all; our "
    "contract raises UnreadableMessage, Mime4j makes a header-less message",
    ("mime4j", "testmsgs/malformedHeaderStartsBody-noheader.msg", "parse"): "opinion: as malformedHeader-noheader",
    ("mime4j", "testmsgs/malformedHeaderStartsBody-nocrlfcrlf.msg", "body"): "opinion: a non-header line ends "
    "the header block for us (stdlib rule, one field follows); Mime4j skips it and reads one more header",
    ("mime4j", "testmsgs/very-long-boundary.msg", "body"): "opinion: the boundary parameter ends in spaces, "
    "which RFC 2046 forbids; we ignore trailing spaces (as the stdlib does), Mime4j keeps them",
    ("mime4j", "testmsgs/very-very-long-boundary.msg", "body"): "opinion: as very-long-boundary",
    ("mime4j", "testmsgs/weird-boundary.msg", "body"): "opinion: as very-long-boundary",
}
