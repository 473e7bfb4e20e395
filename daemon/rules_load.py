"""Loading classification rules: the ``[rules]`` table or its file, validated into a RuleSet.

The semantics of every key are in ``daemon.rules``' docstring and ``examples/rules.toml``.
"""

from __future__ import annotations

import csv
import re
import tomllib
from pathlib import Path
from typing import Any

from ticketd.daemon.config import ConfigError, Section
from ticketd.daemon.rules import _CONDITIONS, _NAME, FIELDS, PRIORITIES, HelpArticle, Rule, RuleSet


def load_rules(section: Section, config_dir: Path) -> RuleSet:
    """Validate the ``[rules]`` table (or the rules file it names) into a RuleSet."""
    name = section.get("file", str, None)
    if name is None:
        rules = _ruleset(section, config_dir)
        section.done()
        return rules
    others = sorted(set(section.data) - {"file"})
    if others:
        raise ConfigError(f"{section.file}: {section.key(others[0])}: not allowed next to "
                          f"{section.key('file')} (put it in the rules file)")
    path = Path(name) if Path(name).is_absolute() else config_dir / name
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        section.fail("file", "an existing rules file", str(path))
        raise AssertionError("unreachable") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    section.done()
    top = Section(path, "", data)
    rules = _ruleset(top, path.parent)
    top.done()
    return rules


def _ruleset(section: Section, base: Path) -> RuleSet:
    default = section.choice("default_priority", PRIORITIES, "P3")
    tiers = _tiers(section, base)
    first_response = _first_response(section.sub("first_response", {}))
    raw_rules = section.get("rule", list, [], expected="an array of [[rule]] tables")
    rules: list[Rule] = []
    where: dict[str, str] = {}
    for i, item in enumerate(raw_rules):
        rule_section = Section(section.file, section.key(f"rule[{i}]"), item)
        rule = _rule(rule_section, set(tiers.values()))
        if rule.name in where:
            raise ConfigError(f"{section.file}: {rule_section.where}.name: expected a unique rule name, "
                              f"{rule.name!r} is also {where[rule.name]}")
        where[rule.name] = rule_section.where
        rules.append(rule)
    raw_articles = section.get("article", list, [], expected="an array of [[article]] tables")
    articles = tuple(_article(Section(section.file, section.key(f"article[{i}]"), item))
                     for i, item in enumerate(raw_articles))
    return RuleSet(tuple(rules), default, tiers, first_response, articles, str(section.file))


def _strings(section: Section, name: str, lower: bool = False) -> tuple[str, ...]:
    """A string or an array of non-empty strings; () when absent."""
    value: Any = section.get(name, object, None)
    items = [value] if isinstance(value, str) else value
    if value is None:
        return ()
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        section.fail(name, "a string or an array of non-empty strings", value)
    return tuple(v.strip().lower() if lower else v.strip() for v in items)


def _short_name(section: Section, name: str, value: str) -> None:
    if not _NAME.fullmatch(value):
        section.fail(name, "a short name of letters, digits, - and _", value)


def _rule(section: Section, known_tiers: set[str]) -> Rule:
    name = section.get("name", str)
    _short_name(section, "name", name)
    section.where = f"{section.where} ({name})"  # every later message names the rule
    keywords = _strings(section, "keywords")
    fields = _strings(section, "fields", lower=True) if "fields" in section.data else FIELDS
    for value in fields or ("",):
        if value not in FIELDS:
            section.fail("fields", 'an array of "subject" and/or "body"', section.data["fields"])
    tiers = _strings(section, "tier", lower=True)
    for tier in tiers:
        if tier not in known_tiers:
            known = ", ".join(sorted(known_tiers)) or "none defined"
            section.fail("tier", f"a tier from tiers / tiers_csv ({known})", tier)
    priority = section.get("priority", str, "")
    if priority and priority not in PRIORITIES:
        section.fail("priority", "one of " + " | ".join(PRIORITIES), priority)
    rule = Rule(
        name=name,
        description=section.get("description", str, ""),
        keywords=keywords,
        regex=_regex(section),
        fields=fields,
        sender_domains=tuple(d.lstrip("@") for d in _strings(section, "sender_domains")),
        senders=_strings(section, "senders"),
        tiers=tiers,
        mailboxes=_strings(section, "mailboxes"),
        priority=priority,
        category=section.get("category", str, "").strip(),
        queue=section.get("queue", str, "").strip(),
        tags=_strings(section, "tags"),
        stop=section.get("stop", bool, False),
    )
    section.done()
    if not any(section.data.get(key) for key in _CONDITIONS):
        section.fail("", "at least one condition: " + ", ".join(_CONDITIONS))
    if "fields" in section.data and not (rule.keywords or rule.regex):
        section.fail("fields", "only next to keywords or regex", section.data["fields"])
    return rule


def _regex(section: Section) -> re.Pattern[str] | None:
    pattern = section.get("regex", str, None)
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    except re.error as exc:
        raise ConfigError(f"{section.file}: {section.where}: invalid regex {pattern!r}: {exc}") from None
    if compiled.search("") is not None:
        raise ConfigError(f"{section.file}: {section.where}: invalid regex {pattern!r}: "
                          "it matches the empty string, so it would fire on every mail")
    return compiled


def _first_response(section: Section) -> dict[str, str]:
    times: dict[str, str] = {}
    for priority in PRIORITIES:
        value = section.get(priority, str, None, expected='a time to show customers, like "4 hours"')
        if value is not None:
            times[priority] = value.strip()
    section.done()
    return times


def _tiers(section: Section, base: Path) -> dict[str, str]:
    """address or domain -> tier, from [tiers] and tiers_csv; an entry in two tiers is an error."""
    tiers: dict[str, str] = {}
    origin: dict[str, str] = {}

    def add(entry: str, tier: str, where: str) -> None:
        entry = entry.strip().lower()
        entry = entry.removeprefix("@")  # "@bigcorp.example" means the domain
        if not entry or any(c.isspace() for c in entry) or entry.count("@") > 1:
            raise ConfigError(f"{where}: expected an address or a domain, got {entry!r}")
        if tiers.get(entry, tier) != tier:
            raise ConfigError(f"{where}: {entry} is already in tier {tiers[entry]!r} ({origin[entry]})")
        tiers[entry], origin[entry] = tier, where

    inline = section.sub("tiers", {})
    for tier in inline.data:
        _short_name(inline, tier, tier)
        for entry in _strings(inline, tier):
            add(entry, tier.lower(), f"{inline.file}: {inline.key(tier)}")
    inline.done()
    name = section.get("tiers_csv", str, None)
    if name is not None:
        path = Path(name) if Path(name).is_absolute() else base / name
        if not path.is_file():
            section.fail("tiers_csv", "an existing CSV file (address_or_domain,tier)", str(path))
        for line, entry, tier in _csv_rows(path):
            if not _NAME.fullmatch(tier):
                raise ConfigError(f"{path}: line {line}: expected a tier name of letters, digits, - and _, "
                                  f"got {tier!r}")
            add(entry, tier.lower(), f"{path}: line {line}")
    return tiers


def _csv_rows(path: Path) -> list[tuple[int, str, str]]:
    """(line number, address_or_domain, tier) of each data row; extra columns are ignored."""
    found: list[tuple[int, str, str]] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:  # -sig: spreadsheets write a BOM
            reader = csv.reader(fh)
            for row in reader:
                cells = [cell.strip() for cell in row]
                if not any(cells) or cells[0].startswith("#"):
                    continue
                if not found and cells[0].lower() == "address_or_domain":
                    continue  # the header row
                if len(cells) < 2 or not cells[0] or not cells[1]:
                    raise ConfigError(f"{path}: line {reader.line_num}: expected address_or_domain,tier, "
                                      f"got {','.join(row)!r}")
                found.append((reader.line_num, cells[0], cells[1]))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: expected UTF-8 text") from None
    except csv.Error as exc:
        raise ConfigError(f"{path}: not valid CSV: {exc}") from None
    return found


def _article(section: Section) -> HelpArticle:
    title = section.get("title", str).strip()
    if not title:
        section.fail("title", "a non-empty title", title)
    url = section.get("url", str)
    if not url.startswith(("https://", "http://")):
        section.fail("url", "an http:// or https:// URL", url)
    keywords = _strings(section, "keywords")
    if not keywords:
        section.fail("keywords", "an array of keywords (required)")
    section.done()
    return HelpArticle(title, url, keywords)
