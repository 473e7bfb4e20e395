"""What mail clients write around quoted history, per language: the words and compiled patterns.

Every pattern here runs on one line, or on at most three joined lines, capped at MAX_LINE
characters; none has two unbounded wildcards, so a hostile line costs linear time.
"""

from __future__ import annotations

import re

MAX_LINE = 400  # longer lines are never an attribution, header, separator or signature line

# "On <date>, <name> wrote:" and its translations (Gmail, Apple Mail, Thunderbird, iOS, Android).
# The opener starts the line; the verb ends it, followed by at most a name and the colon
# (German and Dutch put the name after the verb; Gmail for Android writes "X schrieb am <date>:").
ATTRIBUTION_OPENER = re.compile(
    r"(?:On|Am|Le|El|Op|Il|Em|Den|Dne|Dnia|W dniu|Às|A las)\s",
    re.IGNORECASE,
)
ATTRIBUTION_VERB = re.compile(
    r"\b(?:wrote|writes|schrieb|schreibt|a\s+écrit|escribió|escreveu|escrevera|schreef|geschreven"
    r"|ha\s+scritto|skrev|napisał(?:\(a\))?|napsal(?:\(a\))?|kirjoitti|написал(?:\(а\))?)\b[^\n]{0,120}?\s*:$",
    re.IGNORECASE,
)
ATTRIBUTION_TAIL = 160  # the verb is looked for in the last characters only

# Separators that start the quoted or forwarded history on their own line.
_SEPARATOR_WORDS = (
    "original message|ursprüngliche nachricht|originalnachricht|message d'origine|message original"
    "|mensaje original|oorspronkelijk bericht|origineel bericht|messaggio originale|mensagem original"
    "|originalmeddelande|oprindelig meddelelse|opprinnelig melding|alkuperäinen viesti"
    "|wiadomość oryginalna|původní zpráva|original nachricht|forwarded message|weitergeleitete nachricht"
    "|message transféré|mensaje reenviado|doorgestuurd bericht|messaggio inoltrato"
    "|mensagem encaminhada|mensagem reencaminhada|vidarebefordrat meddelande"
)
SEPARATOR = re.compile(rf"[-_=]{{2,}}\s*\*?(?:{_SEPARATOR_WORDS})\*?\s*[-_=]{{2,}}", re.IGNORECASE)
FORWARD_INTRO = re.compile(
    r"(?:begin forwarded message|anfang der weitergeleiteten (?:e-mail|nachricht)"
    r"|début du message réexpédié|début du message transféré|inicio del mensaje reenviado"
    r"|begin doorgestuurd bericht|inizio messaggio inoltrato|início da mensagem (?:re)?encaminhada)\s*:",
    re.IGNORECASE,
)
# A rule that Outlook (web, iOS, Android) and Yahoo draw above the header block.
RULE = re.compile(r"\s*(?:_{8,}|-{8,})\s*")

# Header names of a quoted header block ("From: … Sent: … To: … Subject: …"), lower case,
# by what they mean. Outlook writes them in the user's language; French puts a space before
# the colon; Gmail renders Outlook's bold as *From:*.
_HEADERS = {
    "from": "from|von|de|van|da|från|fra|od|от|kimden|lähettäjä|feladó|发件人|寄件者|差出人",
    "date": "sent|date|gesendet|datum|envoyé|envoyé le|enviado|enviado el|enviada|fecha|verzonden|inviato"
    "|data|skickat|sendt|wysłano|odesláno|lähetetty|发送时间|日期|送信日時",
    "to": "to|an|à|a|para|aan|till|til|do|komu|vastaanottaja|收件人|宛先",
    "cc": "cc|kopie|copie|cópia|kopia|kopi|抄送",
    "subject": "subject|betreff|objet|sujet|asunto|onderwerp|oggetto|assunto|ämne|emne|temat|předmět"
    "|aihe|主题|主旨|件名",
}
HEADER_NAMES = {name: meaning for meaning, names in _HEADERS.items() for name in names.split("|")}
HEADER_LINE = re.compile(r"[ \t]*\*{0,2}([^\W\d_][\w-]*(?: [^\W\d_]+)?)[ \t\u00a0\u202f]*\*{0,2}[:：]\*{0,2}(?:\s|$)")
HEADER_PREFIX = 40  # a header name and its colon sit in a line's first characters

# Lines a phone or webmail app appends: "Sent from my iPhone", "Von meinem iPhone gesendet",
# "Get Outlook for iOS<https://aka.ms/o0ukef>". A few words, no sentence punctuation.
_WORD = r"[^\s,;:!?]+"
MOBILE = re.compile(
    rf"""(?:
        (?:sent|gesendet|envoyé|enviado|enviada|verstuurd|verzonden|inviato|skickat|sendt)
            \s+(?:from|with|von|mit|de|depuis|à\s+partir\s+de|desde|do|vanaf|met|da|dal|dalla|från|fra)
            (?:\s+{_WORD}){{1,6}}
      | von\s+mein(?:em|er)(?:\s+{_WORD}){{1,4}}\s+gesendet
      | (?:get|download|holen\s+sie\s+sich|obtenir|obtener|obter\s+o|scarica|downloaden)\s+outlook
            \s+(?:for|für|pour|para|per|voor)\s+(?:ios|android)(?:\s*<[^>\s]{{1,200}}>)?
    )[.!]?""",
    re.IGNORECASE | re.VERBOSE,
)
MOBILE_MAX = 120

# RFC 3676 4.3: "-- " alone on a line starts the signature; HTML-to-text and some clients lose
# the space, so "--" counts too.
SIGNATURE_DELIMITER = frozenset({"--", "-- "})
# A line of underscores closing the text: a mailing list footer or a signature rule.
FOOTER_RULE = re.compile(r"_{2,}\s*")
# "-Abhishek Kona": a sign-off dash right before a capitalised name (github/email_reply_parser's
# "-\w"); "-open the app" is a list item.
DASH_SIGN_OFF = re.compile(r"-[^\W\d_][\w.'-]*(?: [^\W\d_][\w.'-]*){0,2}")
SIGNATURE_MAX_LINES = 20  # a "--" or underscore block longer than this is text, not a signature
