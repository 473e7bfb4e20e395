"""Classification: rules from the config give a mail its priority, category, queue and tags.

Where the rules live
    Inline in the main config, in the ``[rules]`` table (``[[rules.rule]]``, ``[[rules.article]]``,
    ``[rules.tiers]``, ``[rules.first_response]``), or in a file it names:
    ``[rules] file = "rules.toml"`` (relative to the config's directory), which holds the same
    keys at its top level (``[[rule]]``, ``[[article]]``, ``[tiers]``, ...). ``file`` stands alone:
    any other key next to it is an error. ``tiers_csv`` is relative to the file that names it.
    ``examples/rules.toml`` documents every key.

A rule
    ``name`` (required, unique; letters, digits, - and _), optional ``description``; conditions:
    ``keywords``, ``regex`` (searched in ``fields``: "subject" and/or "body", default both),
    ``sender_domains``, ``senders``, ``tier``, ``mailboxes``; actions: ``priority`` (P1..P4),
    ``category``, ``queue``, ``tags``; and ``stop``. A rule needs at least one condition. The
    conditions of one rule are AND-ed; the items of one list are OR-ed. A list may be written as
    a single string.

Semantics: every matching rule fires
    Rules are evaluated in file order and every rule whose conditions hold fires (unless an
    earlier fired rule has ``stop = true``: then no later rule is evaluated).
    - priority: the highest (P1 beats P2) among the fired rules that set one; ``default_priority``
      (default "P3") when none does. A rule can raise or lower the default, and P4 rules never
      lower what another fired rule raised.
    - queue and category: each from the first fired rule that sets it, so order the rules that
      should win first (the example puts the P1 emergency rule first so it wins the queue).
      "" when no fired rule sets it; the pipeline then uses the mailbox name as the queue.
    - tags: the union of the fired rules' tags, in order of first appearance.
    - fired: the names of the fired rules in evaluation order; ``reasons`` says for each what
      matched (``emergency: keyword 'outage' in subject``), for ``tickets show``.
    - first_response: the ``[first_response]`` text for the resulting priority ("" if none).

Matching
    - keywords: whole words, case-insensitive (``str.lower`` on both sides): the characters
      just before and after the keyword must not be letters, digits or "_". "error" matches
      "Error:" but not "terrors" nor "errors" (no stemming: list inflections you want). A
      phrase ("how do I") matches across any run of whitespace, line breaks included.
    - regex: Python ``re`` syntax, compiled at load, case-insensitive like keywords and with
      ``^``/``$`` matching at line breaks; ``(?-i:...)`` makes a part case-sensitive. A pattern
      that matches the empty string is refused (it would fire on every mail).
    - the body is what the writer added (``ParsedMessage.new_text``: quoted history and signature
      removed), else the readable text (from the HTML part when there is no plain text), cut to its first 20,000 characters; then everything from a signature line
      ("-- ") or an Outlook "-----Original Message-----" line on is dropped, and quoted lines
      (starting with ">", after optional blanks) are ignored, so a reply that quotes "urgent"
      does not escalate. The subject is used whole.
    - senders: the requester's address (From; Reply-To, then Sender, when From has none),
      case-insensitive, exact. sender_domains: its domain or any subdomain of it
      ("bigcorp.example" covers "eu.bigcorp.example"). These headers are what the sender
      claims: authenticate them upstream if a tier buys real privileges.
    - tier: the sender's tier from ``[tiers]`` (``enterprise = ["bigcorp.example",
      "cto@small.example"]``) and/or ``tiers_csv`` (rows ``address_or_domain,tier``; optional
      header row, "#" comment lines). An address entry beats a domain entry, a longer domain
      beats its parent. Tier names are case-insensitive; a rule naming an unknown tier, or an
      entry listed under two tiers, is a config error.
    - mailboxes: the name of the mailbox the mail arrived in (``[[mailboxes]] name``),
      case-insensitive; "" (``ticketd ingest``) matches no mailbox rule.

Help-centre articles (``[[article]]`` title, url, keywords) are matched by ``match_articles``
with the same keyword rules and body preparation: an article scores 2 per keyword found in the
subject and 1 per keyword found only in the body; the best ``limit`` (default 3) with a score
above 0 are returned, best first, ties in file order.

Loading and validation live in ``daemon.rules_load``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from ticketd.daemon.parsers.model import ParsedMessage

PRIORITIES = ("P1", "P2", "P3", "P4")
FIELDS = ("subject", "body")
BODY_LIMIT = 20_000  # characters of body text searched; keeps classify fast on huge mails
_CONDITIONS = ("keywords", "regex", "sender_domains", "senders", "tier", "mailboxes")
_NAME = re.compile(r"[A-Za-z0-9_-]+")
# Where the author's own words end: a signature separator (RFC 3676 4.3, often sent without
# its trailing blank) or Outlook's reply header, below which the old mail follows unquoted.
# Both patterns start with a literal newline, which the regex engine scans for quickly.
_CUT = re.compile(r"\n(?:--[ \t]*|[ \t]*-{3,}[ \t]*original message[ \t]*-{3,}[ \t]*)(?=\n|$)", re.IGNORECASE)
_QUOTED = re.compile(r"\n[ \t]*>[^\n]*")


def _normal_keywords(keywords: Iterable[str]) -> tuple[str, ...]:
    """Lower case, inner whitespace collapsed to one blank: the form matching works with."""
    return tuple(" ".join(k.lower().split()) for k in keywords)


@dataclass(frozen=True)
class Rule:
    """One classification rule, validated and compiled."""

    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()  # lower case, inner whitespace collapsed to one blank
    regex: re.Pattern[str] | None = None
    fields: tuple[str, ...] = FIELDS  # where keywords and regex are searched
    sender_domains: tuple[str, ...] = ()  # lower case
    senders: tuple[str, ...] = ()  # lower case
    tiers: tuple[str, ...] = ()  # lower case
    mailboxes: tuple[str, ...] = ()  # lower case
    priority: str = ""  # "" when the rule does not set one
    category: str = ""
    queue: str = ""
    tags: tuple[str, ...] = ()
    stop: bool = False  # no later rule is evaluated once this one fired

    def __post_init__(self) -> None:
        # The loader already writes these forms; a Rule built in code gets them too.
        for name in ("sender_domains", "senders", "tiers", "mailboxes"):
            object.__setattr__(self, name, tuple(v.lower() for v in getattr(self, name)))
        object.__setattr__(self, "keywords", _normal_keywords(self.keywords))
        object.__setattr__(self, "fields", tuple(f for f in FIELDS if f in self.fields))


@dataclass(frozen=True)
class HelpArticle:
    """A help-centre article offered in the acknowledgement when its keywords match."""

    title: str
    url: str
    keywords: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "keywords", _normal_keywords(self.keywords))


@dataclass(frozen=True)
class RuleSet:
    """Everything classification needs; immutable once loaded (do not mutate the dicts)."""

    rules: tuple[Rule, ...] = ()
    default_priority: str = "P3"
    tiers: dict[str, str] = field(default_factory=dict)  # address or domain (lower case) -> tier
    first_response: dict[str, str] = field(default_factory=dict)  # "P1" -> "1 hour"
    articles: tuple[HelpArticle, ...] = ()
    source: str = ""  # the file the rules came from
    # Every distinct keyword of the rules / the articles, compiled once here.
    rule_keywords: tuple[_Keyword, ...] = field(init=False, repr=False, compare=False, default=())
    article_keywords: tuple[_Keyword, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule_keywords", _compile_keywords(k for r in self.rules for k in r.keywords))
        object.__setattr__(self, "article_keywords",
                           _compile_keywords(k for a in self.articles for k in a.keywords))

    def tier_of(self, email: str) -> str:
        """The tier of a sender address ("" if none): see ``tier_entry``."""
        return self.tier_entry(email)[0]

    def tier_entry(self, email: str) -> tuple[str, str]:
        """(tier, the entry that gave it): the exact address first, then its domain and parents."""
        email = email.lower()
        if not self.tiers or "@" not in email:
            return "", ""
        if email in self.tiers:
            return self.tiers[email], email
        domain = email.rpartition("@")[2]
        while domain:
            if domain in self.tiers:
                return self.tiers[domain], domain
            domain = domain.partition(".")[2]
        return "", ""


@dataclass(frozen=True)
class Classification:
    """What the rules decided about one mail."""

    priority: str  # "P1".."P4"
    category: str  # "" if none
    queue: str  # "" if none (the pipeline then uses the mailbox name)
    tags: tuple[str, ...]
    fired: tuple[str, ...]  # names of the rules that matched, in evaluation order
    first_response: str  # expected first-response time for the priority, "" if not configured
    reasons: tuple[str, ...] = ()  # one line per fired rule: what matched


# ---------------------------------------------------------------------------------------------
# Matching


class _Keyword(NamedTuple):
    """A keyword (lower case, single-spaced) compiled for whole-word search in lower-cased text."""

    text: str
    probe: str  # its longest piece: a substring test, far cheaper than the regex, goes first
    search: Callable[[str], re.Match[str] | None]


def _compile_keywords(keywords: Iterable[str]) -> tuple[_Keyword, ...]:
    compiled: dict[str, _Keyword] = {}
    for keyword in keywords:
        if keyword not in compiled:
            pieces = keyword.split(" ")
            body = r"\s+".join(re.escape(piece) for piece in pieces)
            pattern = re.compile(rf"(?<!\w){body}(?!\w)")
            compiled[keyword] = _Keyword(keyword, max(pieces, key=len), pattern.search)
    return tuple(compiled.values())


def _body(text: str) -> str:
    """The author's own words: bounded, cut at the signature or Outlook's reply header, unquoted."""
    body = "\n" + text[:BODY_LIMIT]  # the leading newline lets every line start with "\n"
    if "--" in body:
        cut = _CUT.search(body)
        if cut:
            body = body[:cut.start()]
    if ">" in body:
        body = _QUOTED.sub("\n", body)
    return body[1:]


def _found(keywords: tuple[_Keyword, ...], text: str) -> set[str]:
    """The keywords that occur in ``text`` (lower case) as whole words."""
    return {keyword for keyword, probe, search in keywords if probe in text and search(text)}


class _Text:
    """One message's subject and body, and which of the given keywords occur in each."""

    def __init__(self, message: ParsedMessage, keywords: tuple[_Keyword, ...]) -> None:
        # The writer's own words only (issue 8): a quoted "urgent" of an earlier mail is no news.
        self.original = {"subject": message.subject, "body": _body(message.new_text or message.text)}
        # One pass over all keywords of the rule set; the rules then only intersect sets.
        self.in_subject = _found(keywords, message.subject.lower())
        self.in_body = _found(keywords, self.original["body"].lower())
        self.anywhere = self.in_subject | self.in_body

    def pool(self, fields: tuple[str, ...]) -> set[str]:
        """The keywords found in ``fields`` (canonical order, see Rule)."""
        if fields == FIELDS:
            return self.anywhere
        return self.in_subject if fields == ("subject",) else self.in_body if fields == ("body",) else set()

    def keyword_in(self, keywords: tuple[str, ...], fields: tuple[str, ...]) -> str:
        """'keyword 'x' in subject' for the first of ``keywords`` found, "" when none is."""
        pool = self.pool(fields)
        if pool.isdisjoint(keywords):
            return ""
        keyword = next(k for k in keywords if k in pool)
        where = "subject" if "subject" in fields and keyword in self.in_subject else "body"
        return f"keyword {keyword!r} in {where}"


def _domain_in(domain: str, domains: tuple[str, ...]) -> str:
    for candidate in domains:
        if domain == candidate or domain.endswith("." + candidate):
            return candidate
    return ""


def _check(rule: Rule, text: _Text, sender: str, tier: tuple[str, str], mailbox: str) -> list[str] | None:
    """What matched, one phrase per condition, or None when the rule does not fire."""
    why: list[str] = []
    # The cheap conditions first: most rules fail on them without touching the text.
    if rule.mailboxes:
        if mailbox not in rule.mailboxes:
            return None
        why.append(f"mailbox {mailbox}")
    if rule.senders:
        if sender not in rule.senders:
            return None
        why.append(f"sender {sender}")
    if rule.sender_domains:
        domain = _domain_in(sender.rpartition("@")[2], rule.sender_domains) if "@" in sender else ""
        if not domain:
            return None
        why.append(f"sender domain {domain}")
    if rule.tiers:
        if tier[0] not in rule.tiers:
            return None
        why.append(f"tier {tier[0]} ({tier[1]})")
    if rule.keywords:
        found = text.keyword_in(rule.keywords, rule.fields)
        if not found:
            return None
        why.append(found)
    if rule.regex is not None:
        where = next((f for f in rule.fields if rule.regex.search(text.original[f])), "")
        if not where:
            return None
        why.append(f"regex {rule.regex.pattern!r} in {where}")
    return why


def classify(message: ParsedMessage, mailbox: str, rules: RuleSet) -> Classification:
    """Run ``rules`` over one message that arrived in ``mailbox`` (its name). Pure."""
    text = _Text(message, rules.rule_keywords)
    sender = message.requester.email.lower() if message.requester is not None else ""
    tier = rules.tier_entry(sender)
    box = mailbox.lower()
    priority, category, queue = "", "", ""
    tags: dict[str, None] = {}
    fired: list[str] = []
    reasons: list[str] = []
    for rule in rules.rules:
        why = _check(rule, text, sender, tier, box)
        if why is None:
            continue
        fired.append(rule.name)
        reasons.append(f"{rule.name}: {', '.join(why)}")
        if rule.priority and (not priority or rule.priority < priority):  # "P1" < "P2"
            priority = rule.priority
        category = category or rule.category
        queue = queue or rule.queue
        tags.update(dict.fromkeys(rule.tags))
        if rule.stop:
            break
    priority = priority or rules.default_priority
    return Classification(priority, category, queue, tuple(tags), tuple(fired),
                          rules.first_response.get(priority, ""), tuple(reasons))


def match_articles(message: ParsedMessage, rules: RuleSet, limit: int = 3) -> tuple[HelpArticle, ...]:
    """Up to ``limit`` help articles whose keywords occur in the mail, best first."""
    if limit <= 0 or not rules.articles:
        return ()
    text = _Text(message, rules.article_keywords)
    scored: list[tuple[int, int, HelpArticle]] = []
    for index, article in enumerate(rules.articles):
        score = sum(2 if k in text.in_subject else 1 for k in article.keywords if k in text.anywhere)
        if score:
            scored.append((-score, index, article))
    scored.sort(key=lambda item: item[:2])
    return tuple(article for _, _, article in scored[:limit])
