"""Seeded, streaming generator of realistic support mail for the benchmark and acceptance tests."""

from __future__ import annotations

import argparse
import base64
import random
import sys
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

from bench import corpus, mime
from bench.compose import Context, Conversation, Customer, Draft
from bench.kinds import BUILDERS_BY_KIND, build_reply
from bench.mime import Headers

# Messages of each kind in every block of 100 (dealt from a shuffled deck: exact per block).
KIND_WEIGHTS: dict[str, int] = {
    "plain": 40,
    "alternative": 18,
    "html": 5,
    "charset": 8,
    "reply": 15,
    "attachment": 8,
    "big-attachment": 2,
    "odd-mime": 4,  # two blocks hold every odd variant once
}
KINDS: tuple[str, ...] = tuple(KIND_WEIGHTS)
_REPLY_WINDOW = 400  # conversations a reply may pick from; bounds memory at any N
_MAX_THREAD = 5  # messages in one conversation at most
_START = datetime(2024, 3, 4, 7, 30, tzinfo=timezone.utc)


@dataclass(frozen=True)
class GeneratedMessage:
    """One generated mail and what the generator knows about it."""

    raw: bytes  # CRLF line endings, RFC 5322
    message_id: str  # "<...>" as in the Message-ID header, "" if deliberately missing
    thread: int  # conversation key; the first message of a conversation opens it
    is_reply: bool  # answers an earlier message of the same thread, via In-Reply-To
    kind: str  # one of KINDS
    sender: str  # bare From address
    variant: str = ""  # detail of the kind: charset, attachment type, odd-MIME case


@dataclass
class _State:
    thread_count: int = 0
    kind_counts: Counter[str] = field(default_factory=Counter)
    deck: list[str] = field(default_factory=list)
    date: datetime = _START
    window: deque[Conversation] = field(default_factory=lambda: deque(maxlen=_REPLY_WINDOW))


def generate(
    n: int, seed: int = 1, *, to: str = "support@example.test"
) -> Iterator[GeneratedMessage]:
    """Yield ``n`` messages, deterministically for (n, seed), one at a time."""
    rng = random.Random(seed)
    customers = _customers(rng)
    state = _State()
    for _ in range(n):
        yield _next_message(rng, customers, state, to)


def _next_message(
    rng: random.Random, customers: list[Customer], state: _State, to: str
) -> GeneratedMessage:
    kind = _deal(rng, state)
    conversation = _pick_conversation(rng, state.window) if kind == "reply" else None
    if kind == "reply" and conversation is None:  # nothing to answer yet
        kind = "plain"
    state.date += timedelta(seconds=rng.randint(20, 900))
    if conversation is not None:
        ctx = _context(rng, conversation.customer, state, to, kind)
        draft = build_reply(ctx, conversation)
    else:
        ctx = _context(rng, _pick_customer(rng, customers, kind), state, to, kind)
        draft = BUILDERS_BY_KIND[kind](ctx)
    state.kind_counts[kind] += 1
    return _finish(ctx, draft, kind, state)


def _deal(rng: random.Random, state: _State) -> str:
    if not state.deck:
        state.deck = [kind for kind, count in KIND_WEIGHTS.items() for _ in range(count)]
        rng.shuffle(state.deck)
    return state.deck.pop()


def _finish(ctx: Context, draft: Draft, kind: str, state: _State) -> GeneratedMessage:
    message_id = ctx.message_id if draft.message_id is None else draft.message_id
    raw = mime.render(replace(draft.body, headers=_headers(ctx, draft, message_id)))
    if draft.reply_to is not None:
        thread = draft.reply_to.thread
        draft.reply_to.ids.append(message_id)
        draft.reply_to.quote = draft.text
    else:
        state.thread_count += 1
        thread = state.thread_count
        if message_id:  # without a Message-ID nothing can reply to it
            conversation = Conversation(thread, ctx.customer, draft.subject, [message_id],
                                        draft.text, ctx.date)
            state.window.append(conversation)
    return GeneratedMessage(
        raw, message_id, thread, draft.reply_to is not None, kind, ctx.customer.email, draft.variant
    )


def _context(
    rng: random.Random, customer: Customer, state: _State, to: str, kind: str
) -> Context:
    message_id = _message_id(rng, customer)
    return Context(rng, customer, state.date, message_id, to, state.kind_counts[kind])


# ---------------------------------------------------------------- customers


def _customers(rng: random.Random) -> list[Customer]:
    customers: list[Customer] = []
    for lang, count in corpus.POOL:
        for name, local in _names(rng, lang, count):
            email = f"{local}@{rng.choice(corpus.DOMAINS[lang])}"
            while any(c.email == email for c in customers):
                email = f"{local}{rng.randint(2, 9)}@{email.split('@')[1]}"
            zone = timezone(timedelta(minutes=rng.choice(corpus.ZONES[lang])))
            customers.append(Customer(name, email, lang, zone, rng.choice(corpus.MAILERS),
                                      rng.choice(corpus.COMPANIES)))
    return customers


def _names(rng: random.Random, lang: str, count: int) -> list[tuple[str, str]]:
    if lang != "en":
        return rng.sample(corpus.NATIVE_NAMES[lang], count)
    pairs = [(first, last) for first in corpus.EN_FIRST for last in corpus.EN_LAST]
    chosen = rng.sample(pairs, count)
    return [(f"{first} {last}", _local_part(rng, first, last)) for first, last in chosen]


def _local_part(rng: random.Random, first: str, last: str) -> str:
    first, last = first.lower(), last.lower().replace("'", "")
    return rng.choice((f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}", f"{first}"
                       f".{last}{rng.randint(1, 99)}"))


def _pick_customer(rng: random.Random, customers: list[Customer], kind: str) -> Customer:
    if kind == "charset":  # mostly people writing in their own language; a few windows-1252
        return rng.choice([c for c in customers if c.lang != "en"] * 3 +
                          [c for c in customers if c.lang == "en"][:5])
    return rng.choice(customers)


def _pick_conversation(rng: random.Random, window: deque[Conversation]) -> Conversation | None:
    """A conversation to follow up on, recent ones likelier; None if it has had enough."""
    for _ in range(3 if window else 0):
        index = len(window) - 1 - min(int(rng.expovariate(1 / 40)), len(window) - 1)
        if len(window[index].ids) < _MAX_THREAD:
            return window[index]
    return None


def _message_id(rng: random.Random, customer: Customer) -> str:
    domain = customer.email.split("@", 1)[1]
    bits = f"{rng.getrandbits(128):032x}"
    if customer.mailer == "gmail":
        return f"<CA{bits[:26].upper()}+{bits[26:]}@mail.gmail.example>"
    if customer.mailer == "outlook":
        host = f"DB9PR0{bits[0]}MB{bits[1:5].upper()}"
        region = f"eurprd0{int(bits[25], 16) % 9 + 1}"
        return f"<{host}{bits[5:25].upper()}@{host}.{region}.prod.outlook.example>"
    if customer.mailer == "apple":
        return f"<{bits[:8].upper()}-{bits[8:12].upper()}-{bits[12:16].upper()}-" \
               f"{bits[16:20].upper()}-{bits[20:].upper()}@{domain}>"
    return f"<{bits[:8]}-{bits[8:12]}-{bits[12:16]}-{bits[16:20]}-{bits[20:]}@{domain}>"


# ---------------------------------------------------------------- headers


def _headers(ctx: Context, draft: Draft, message_id: str) -> Headers:
    customer = ctx.customer
    headers: Headers = [
        *_transport(ctx),
        ("From", mime.address(customer.name, customer.email, draft.charset, draft.mode)),
        ("To", mime.address("Example Support", ctx.to)),
        ("Subject", mime.encode_words(draft.subject, draft.charset, draft.mode)),
        ("Date", format_datetime(ctx.date.astimezone(customer.zone))),
    ]
    if message_id:
        headers.append(("Message-ID", message_id))
    if draft.reply_to is not None:
        headers += _threading(draft.reply_to)
    headers += [("MIME-Version", "1.0"), *_mailer_headers(ctx), *draft.body.headers]
    return draft.fixup(headers) if draft.fixup else headers


def _transport(ctx: Context) -> Headers:
    """What the hops on the way add: Return-Path, Received, Authentication-Results, DKIM."""
    rng, domain = ctx.rng, ctx.customer.email.split("@", 1)[1]
    address = f"192.0.2.{rng.randint(2, 254)}"
    stamp = format_datetime((ctx.date + timedelta(seconds=2)).astimezone(timezone.utc))
    sent = format_datetime((ctx.date + timedelta(seconds=1)).astimezone(ctx.customer.zone))
    return [
        ("Return-Path", f"<{ctx.customer.email}>"),
        ("Delivered-To", ctx.to),
        ("Received", f"from mail.{domain} (mail.{domain} [{address}])\r\n"
                     f"\tby mx.example.test (Postfix) with ESMTPS id {rng.getrandbits(40):010X}"
                     f"\r\n\tfor <{ctx.to}>; {stamp}"),
        ("Authentication-Results", f"mx.example.test;\r\n\tdkim=pass header.d={domain};"
                                   f"\r\n\tspf=pass smtp.mailfrom={ctx.customer.email}"),
        ("Received", f"from [10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}]"
                     f" (unknown [{address}])\r\n\tby mail.{domain} (Postfix) with ESMTPSA id "
                     f"{rng.getrandbits(40):010X};\r\n\t{sent}"),
        ("DKIM-Signature", _dkim(rng, domain)),
    ]


def _dkim(rng: random.Random, domain: str) -> str:
    body_hash = base64.b64encode(rng.randbytes(32)).decode("ascii")
    signature = base64.b64encode(rng.randbytes(256)).decode("ascii")
    # Whitespace inside b= is ignored (RFC 6376 3.5), which is how signers fold it.
    folded = "\r\n\t ".join(signature[i:i + 70] for i in range(0, len(signature), 70))
    return (f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain};\r\n\ts=mail2024; "
            f"t={int(datetime.timestamp(datetime(2024, 3, 4)))}; "
            f"h=from:to:subject:date:message-id;\r\n\tbh={body_hash};\r\n\tb={folded}")


def _threading(conversation: Conversation) -> Headers:
    ids = conversation.ids
    # Long threads keep the first and the latest ids (RFC 5322 3.6.4 allows trimming).
    refs = ids if len(ids) <= 10 else [ids[0], *ids[-9:]]
    return [("In-Reply-To", ids[-1]), ("References", " ".join(refs))]


def _mailer_headers(ctx: Context) -> Headers:
    mailer = ctx.customer.mailer
    if mailer == "thunderbird":
        return [("User-Agent", "Mozilla Thunderbird 115.8.1"), ("Content-Language", "en-US")]
    if mailer == "outlook":
        index = f"AQH{ctx.rng.getrandbits(120):030x}"
        return [("X-Mailer", "Microsoft Outlook 16.0"), ("Thread-Index", index),
                ("Content-Language", "en-us")]
    if mailer == "apple":
        return [("X-Mailer", "Apple Mail (2.3774.400.31)")]
    if mailer == "roundcube":
        return [("User-Agent", "Roundcube Webmail/1.6.6")]
    return []


# ---------------------------------------------------------------- command line


def write_eml(messages: Iterator[GeneratedMessage], out: Path) -> int:
    """Write each message to ``out`` as NNNN-kind.eml; return how many."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, message in enumerate(messages, start=1):
        suffix = f"-{message.variant}" if message.variant else ""
        (out / f"{count:04d}-{message.kind}{suffix}.eml").write_bytes(message.raw)
    return count


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.generate --n 10 --seed 1 --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--to", default="support@example.test")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    count = write_eml(generate(args.n, args.seed, to=args.to), args.out)
    print(f"wrote {count} messages to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
