"""Quote and signature stripping measured: each library and our new_text against expected new text.

    python -m devtools.reply_measure [--corpus DIR] [--show NAME]

Three sets. "samples": tests/parsers/replies/, one body per client format with a hand-written
.expected.txt; a stem with both .txt and .html is two cases, the multipart/alternative one
(plain text + HTML) and the HTML-only one (the text is then what the parser derives from the
HTML). "github": ../shared/corpus/github-email-reply-parser/ with the checks of its
expected.json. "eml": whole messages from ../shared/corpus (Zammad, django-helpdesk) through our
parser, each with a text that must stay and one that must go (see EML_CHECKS).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ticketd.daemon.parsers import parse_message
from ticketd.daemon.parsers.htmltext import html_to_text

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "tests" / "parsers" / "replies"
CORPUS = REPO_ROOT.parent / "shared" / "corpus"
LANGUAGES = ["en", "de", "fr", "es", "nl", "it"]  # every mail-parser-reply language we need (it has no pt)
SLOW = 1.0  # seconds; github's own limit for pathological.txt and email_long_quote.txt


@dataclass(frozen=True)
class Case:
    """One body to strip: the text the parser hands on, the HTML when there is one, the expectation."""

    name: str
    text: str
    html: str | None
    expected: str
    html_only: bool = False


def load_samples(folder: Path = SAMPLES) -> list[Case]:
    """Every sample of ``folder``: stem.txt and/or stem.html with stem.expected.txt."""
    cases = []
    for expected_file in sorted(folder.glob("*.expected.txt")):
        stem = expected_file.name.removesuffix(".expected.txt")
        expected = expected_file.read_text(encoding="utf-8")
        plain, html = folder / f"{stem}.txt", folder / f"{stem}.html"
        html_text = html.read_text(encoding="utf-8") if html.exists() else None
        if plain.exists():
            cases.append(Case(stem, plain.read_text(encoding="utf-8"), html_text, expected))
        if html_text is not None:
            name = f"{stem} (html)" if plain.exists() else stem
            cases.append(Case(name, html_to_text(html_text), html_text, expected, html_only=True))
    return cases


def normalized(text: str) -> str:
    """What agreement compares: line ends, trailing blanks and runs of blank lines don't count."""
    lines = (line.rstrip() for line in text.replace("\r\n", "\n").replace("\ufeff", "").split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def agrees(got: str, expected: str) -> bool:
    return normalized(got) == normalized(expected)


# --- the contestants: (text, html, html_only) -> new text ---------------------------------------

Stripper = Callable[[str, "str | None", bool], str]
Cases = list[tuple[str, str, "str | None", bool]]  # name, text, html, html_only
Checks = dict[str, Callable[[str], bool]]


def _email_reply_parser(text: str, html: str | None, html_only: bool) -> str:
    from email_reply_parser import EmailReplyParser  # type: ignore[import-untyped]

    return str(EmailReplyParser.parse_reply(text))


def _mail_parser_reply(text: str, html: str | None, html_only: bool) -> str:
    from mailparser_reply import EmailReplyParser  # type: ignore[import-untyped]

    return EmailReplyParser(languages=list(LANGUAGES)).parse_reply(text) or ""


def _mail_parser_reply_body(text: str, html: str | None, html_only: bool) -> str:
    """The first reply's ``body``: also without the signatures and disclaimers it recognises."""
    from mailparser_reply import EmailReplyParser

    message = EmailReplyParser(languages=list(LANGUAGES)).read(text)
    return message.replies[0].body if message.replies else ""


def _quotequail(text: str, html: str | None, html_only: bool) -> str:
    import quotequail  # type: ignore[import-untyped]

    if html_only and html:
        return html_to_text(
            "".join(part for shown, part in quotequail.quote_html(html, quote_intro_line=True) if shown)
        )
    return "\n".join(part for shown, part in quotequail.quote(text, quote_intro_line=True) if shown)


def _ours(text: str, html: str | None, html_only: bool) -> str:
    from ticketd.daemon.parsers.reply_text import new_text

    return new_text(text, html)


CONTESTANTS: dict[str, Stripper] = {
    "email-reply-parser": _email_reply_parser,
    "mail-parser-reply": _mail_parser_reply,
    "mpr .body": _mail_parser_reply_body,
    "quotequail": _quotequail,
    "new_text": _ours,
}


@dataclass
class Score:
    """One contestant's results: case name -> agreed, plus the time it took."""

    results: dict[str, bool]
    seconds: float = 0.0
    error: str = ""

    def count(self, names: list[str]) -> str:
        if self.error:
            return self.error
        return f"{sum(self.results.get(n, False) for n in names)}/{len(names)}"


def _run(strip: Stripper, cases: Cases, checks: Checks) -> Score:
    score = Score({})
    for name, text, html, html_only in cases:
        started = time.perf_counter()
        try:
            got = strip(text, html, html_only)
        except ImportError as exc:
            return Score({}, error=f"not installed ({exc.name})")
        except Exception as exc:  # a library that raises has not agreed; the others go on
            got = f"\x00{type(exc).__name__}: {exc}"
        took = time.perf_counter() - started
        score.seconds += took
        score.results[name] = checks[name](got) and took < SLOW
    return score


# --- the github set -----------------------------------------------------------------------------

# Checks for the expected.json entries that only describe fragments in a note (transcribed here).
GITHUB_NOTES: dict[str, dict[str, list[str]]] = {
    "email_1_2.txt": {
        "contains": ["You can list the keys for the bucket"],
        "lacks": ["> Hi folks", "riak-users mailing list"],
    },
    "email_1_8.txt": {
        "contains": ["I will reply under this one", "and under this."],
        "lacks": ["okay.  Well", "Hey there, this is my signature"],
    },
}


def _github_check(expect: dict[str, object], source: str) -> Callable[[str], bool]:
    def check(got: str) -> bool:
        lines = [line.strip() for line in normalized(got).split("\n")]
        ok = True
        if "visible_text" in expect:
            ok &= agrees(got, str(expect["visible_text"]))
        if "visible_startswith" in expect:
            ok &= normalized(got).startswith(str(expect["visible_startswith"]))
        if "visible_contains" in expect:
            ok &= str(expect["visible_contains"]) in got
        for key in ("quoted_part_startswith", "quoted_header_contains"):
            if key in expect:
                ok &= str(expect[key]) not in got
        if "signature_startswith" in expect:
            last = [s for s in str(expect["signature_startswith"]).split("\n") if s.strip()][-1].strip()
            ok &= last not in lines
        if "hidden_startswith" in expect:
            ok &= not any(line.startswith(str(expect["hidden_startswith"])) for line in lines)
        if expect.get("fragments") == 1:
            ok &= agrees(got, source)
        return bool(ok)

    return check


def github_cases(corpus: Path) -> tuple[Cases, Checks]:
    folder = corpus / "github-email-reply-parser"
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    cases: Cases = []
    checks: Checks = {}
    for path in sorted((folder / "emails").glob("*.txt")):
        # The parse step hands on text with LF line ends (daemon/parsers/body.py).
        text = path.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
        expect = dict(expected.get(path.name, {}))
        notes = GITHUB_NOTES.get(path.name, {})
        base = _github_check(expect, text)
        checks[path.name] = _with_notes(base, notes)
        cases.append((path.name, text, None, False))
    return cases, checks


def _with_notes(base: Callable[[str], bool], notes: dict[str, list[str]]) -> Callable[[str], bool]:
    def check(got: str) -> bool:
        return (
            base(got)
            and all(s in got for s in notes.get("contains", []))
            and not any(s in got for s in notes.get("lacks", []))
        )

    return check


# --- the eml set --------------------------------------------------------------------------------

# (file, text that is new and must stay, text that is quoted or signature and must go).
# Zammad marks where it sees the quote or signature start (js-signatureMarker in its .yml); these
# are the markers that sit on a reply header or a "--" line. mail017 and mail030 are left out:
# their marker is on an underscore rule inside a newsletter and a disclaimer. mail036 is a forward
# with nothing new, so everything stays (Zammad marks its second header).
EML_CHECKS: list[tuple[str, str, str | None]] = [
    ("zammad/mail003.box", "für den Beta-Test für die Ticket Templates", "ich versuche an den Punkten anzuknüpfen"),
    ("zammad/mail009.box", "Enjoy!", "Old programmers never die"),
    ("zammad/mail012.box", "Develop-Umgebung", "ich habe (wie telefonisch avisiert)"),
    ("zammad/mail036.box", "Um noch vertrauter zu werden", None),
    ("zammad/mail048.box", "Enjoy!", "Old programmers never die"),
    ("zammad/mail073.box", "Enjoy!", "Old programmers never die"),
    ("zammad/mail080.box", "Enjoy!", "Old programmers never die"),
    ("zammad/mail082.box", "ek stuur die korrekte een", "From: Profsen Lab"),
    ("zammad/mail100.box", "Enjoy!", "Old programmers never die"),
    ("django-helpdesk/test_files/forwarded-message.eml", "This is email body", "Hello there!"),
]


def eml_cases(corpus: Path) -> tuple[Cases, Checks]:
    cases: Cases = []
    checks: Checks = {}
    for name, keep, drop in EML_CHECKS:
        message = parse_message((corpus / name).read_bytes())
        html_only = bool(message.html) and not _has_plain(message.text, message.html)
        cases.append((name, message.text, message.html or None, html_only))
        checks[name] = _keep_drop(keep, drop)
    return cases, checks


def _has_plain(text: str, html: str) -> bool:
    return normalized(text) != normalized(html_to_text(html))


def _keep_drop(keep: str, drop: str | None) -> Callable[[str], bool]:
    def check(got: str) -> bool:
        flat = " ".join(got.split())
        return keep in flat and (drop is None or drop not in flat)

    return check


# --- the report ---------------------------------------------------------------------------------


def _family(name: str, html_only: bool) -> str:
    return name.split(" ")[0].split("-")[0] + (" (html)" if html_only else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the shared corpus folder")
    parser.add_argument("--show", metavar="NAME", help="print each contestant's output for this case")
    parser.add_argument("--only", metavar="CONTESTANT", action="append", help="measure only these")
    args = parser.parse_args()
    contestants = {k: v for k, v in CONTESTANTS.items() if not args.only or k in args.only}

    samples = load_samples()
    sample_checks: Checks = {c.name: functools.partial(agrees, expected=c.expected) for c in samples}
    sets = [("samples", [(c.name, c.text, c.html, c.html_only) for c in samples], sample_checks)]
    if args.corpus.is_dir():
        sets += [("github", *github_cases(args.corpus)), ("eml", *eml_cases(args.corpus))]

    if args.show:
        for _, cases, _checks in sets:
            for name, text, html, html_only in cases:
                if name == args.show:
                    for label, strip in contestants.items():
                        print(f"----- {label}\n{strip(text, html, html_only)}")
        return 0

    for dist in ("email-reply-parser", "mail-parser-reply", "quotequail"):
        print(f"{dist} {_version(dist)}")
    scores = {label: [_run(strip, cases, checks) for _, cases, checks in sets] for label, strip in contestants.items()}
    width = max(len(name) for _, cases, _c in sets for name, *_ in cases) + 2
    header = "".join(f"{label:>20}" for label in contestants)
    for index, (set_name, cases, _checks) in enumerate(sets):
        print(f"\n{set_name:<{width}}{header}")
        for name, *_ in cases:
            cells = "".join(f"{_mark(scores[label][index], name):>20}" for label in contestants)
            print(f"{name:<{width}}{cells}")
        names = [name for name, *_ in cases]
        print(f"{'agreement':<{width}}" + "".join(f"{scores[label][index].count(names):>20}" for label in contestants))
        print(f"{'seconds':<{width}}" + "".join(f"{scores[label][index].seconds:>20.3f}" for label in contestants))
    _families(sets[0][1], scores, contestants, width)
    return 0


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _mark(score: Score, name: str) -> str:
    if score.error:
        return "-"
    return "yes" if score.results.get(name) else "no"


def _families(cases: Cases, scores: dict[str, list[Score]], contestants: dict[str, Stripper], width: int) -> None:
    families: dict[str, list[str]] = {}
    for name, _text, _html, html_only in cases:
        families.setdefault(_family(name, html_only), []).append(name)
    print(f"\n{'samples by client':<{width}}" + "".join(f"{label:>20}" for label in contestants))
    for family, names in families.items():
        print(f"{family:<{width}}" + "".join(f"{scores[label][0].count(names):>20}" for label in contestants))


if __name__ == "__main__":
    raise SystemExit(main())
