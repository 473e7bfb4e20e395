"""Issue 9 on real Dovecot and SMTP, time moved with --now: a P2 mail on a Friday evening.

The office calendar works Mon-Fri 09:00-18:00 in Berlin. A P2's first response is due after
4 business hours: from Friday 17:30 that is 30 minutes on Friday and 3.5 hours on Monday, so
Monday 12:30; 75 % of it (3 hours) is used up at Monday 11:30. By hand, not by the code.
The escalation matrix then climbs from that breach: each step at the breach + its `after`.
"""

from __future__ import annotations

import json
from pathlib import Path

from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from tests.support.daemon import cli, write_config
from tests.support.desk import ALICE, signing_and_alice
from tests.support.mail import simple

BOB = "bob@example.test"  # Tier 2
SLA = f"""
[[agents]]
name = "Bob Second"
address = "{BOB}"
groups = ["tier2"]

[queues.support]
notify = ["tier1"]

[rules]
default_priority = "P2"

[sla.calendars.office]
timezone = "Europe/Berlin"
hours = {{ mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }}
holidays = ["2026-12-24", "2026-12-25..2026-12-26"]

[sla.policies.P2]
calendar = "office"
first_response = "4h"
next_update = "4h"
resolution = "24h"

[[sla.escalation]]
tier = "Tier 2"
after = "0m"
notify = ["tier2"]

[sla.triggers]
unassigned = false  # nobody takes the ticket all weekend: this test is about the breach's escalation
"""


def _at(config: Path, *command: str, now: str) -> str:
    done = cli(config, *command, "--now", now)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def _mails(sink: SmtpSink, to: str, kind: str) -> list[str]:
    return [str(m.message["Subject"]) for m in sink.messages if to in m.rcpt_tos and kind in str(m.message["Subject"])]


async def test_a_friday_evening_p2_warns_and_breaches_on_monday_at_the_hand_computed_instants(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    extra = signing_and_alice(tmp_path, 'groups = ["tier1"]\n') + SLA
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)], extra=extra)
    dovecot.deliver(fresh_user.address, simple("Ann <ann@example.org>", "Invoice wrong", "<i1@example.org>",
                                               to=fresh_user.address))
    _at(config, "run", "--once", now="2026-12-04T17:30:00+01:00")  # Friday 17:30 in Berlin
    shown = json.loads(_at(config, "tickets", "show", "1", "--json", now="2026-12-04T17:31:00+01:00"))
    assert shown["priority"] == "P2"
    # Monday 12:30 CET, to the second: the clock runs on from --now while the run starts
    assert shown["sla"]["targets"]["first_response"]["due"][:19] == "2026-12-07T11:30:00"

    assert _at(config, "sla", "run", now="2026-12-07T11:29:00+01:00").strip() == "0 SLA step(s) run"
    assert _at(config, "sla", "run", now="2026-12-07T11:31:00+01:00").strip() == "1 SLA step(s) run"
    _at(config, "run", "--once", now="2026-12-07T11:32:00+01:00")  # the daemon restarts and sends it
    # A restart between warning and breach: the warning is not given again.
    assert _at(config, "sla", "run", now="2026-12-07T12:00:00+01:00").strip() == "0 SLA step(s) run"
    _at(config, "run", "--once", now="2026-12-07T12:01:00+01:00")
    assert _mails(fresh_sink, ALICE, "SLA warning") == ["[#1] SLA warning (first response): Invoice wrong"]

    _at(config, "sla", "run", now="2026-12-07T12:31:00+01:00")  # past the breach
    _at(config, "run", "--once", now="2026-12-07T12:32:00+01:00")
    _at(config, "sla", "run", now="2026-12-07T13:30:00+01:00")  # nothing more to fire
    _at(config, "run", "--once", now="2026-12-07T13:31:00+01:00")
    assert _mails(fresh_sink, ALICE, "SLA warning") == ["[#1] SLA warning (first response): Invoice wrong"]
    assert _mails(fresh_sink, ALICE, "SLA breached") == ["[#1] SLA breached (first response): Invoice wrong"]
    # Tier 2's contacts, once, and nothing else: Bob is in no queue's notify list.
    assert _mails(fresh_sink, BOB, "") == ["[#1] Escalated to Tier 2: Invoice wrong"]
    events = [e["what"] for e in json.loads(_at(config, "tickets", "show", "1", "--json",
                                                now="2026-12-07T13:32:00+01:00"))["events"]]
    assert (events.count("sla_warning"), events.count("sla_breach"), events.count("escalated")) == (1, 1, 1)


CAROL, DAVE = "carol@example.test", "dave@example.test"
MATRIX = SLA.replace('[rules]', f"""[[agents]]
name = "Carol Engineer"
address = "{CAROL}"
groups = ["eng"]

[[agents]]
name = "Dave Manager"
address = "{DAVE}"
groups = ["managers"]

[queues.eng]
notify = ["eng"]

[rules]""") + """
[[sla.escalation]]
tier = "Engineering"
after = "2h"
notify = ["eng"]
queue = "eng"

[[sla.escalation]]
tier = "Management"
after = "8h"
notify = ["managers"]
"""


async def test_the_matrix_climbs_at_the_hand_computed_instants_and_a_request_for_a_manager_climbs_once_more(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    # The breach is Monday 12:30 CET, as above: Tier 2 at once, Engineering at 14:30, Management not
    # before 20:30, unless the customer asks for a manager first.
    extra = signing_and_alice(tmp_path, 'groups = ["tier1"]\n') + MATRIX
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)], extra=extra)
    dovecot.deliver(fresh_user.address, simple("Ann <ann@example.org>", "Invoice wrong", "<i1@example.org>",
                                               to=fresh_user.address))
    _at(config, "run", "--once", now="2026-12-04T17:30:00+01:00")
    _at(config, "sla", "run", now="2026-12-07T11:31:00+01:00")  # the warning
    assert _at(config, "sla", "run", now="2026-12-07T12:31:00+01:00").strip() == "1 SLA step(s) run"  # breach
    _at(config, "run", "--once", now="2026-12-07T12:32:00+01:00")
    assert _mails(fresh_sink, BOB, "") == ["[#1] Escalated to Tier 2: Invoice wrong"]

    assert _at(config, "sla", "run", now="2026-12-07T14:29:00+01:00").strip() == "0 SLA step(s) run"
    _at(config, "run", "--once", now="2026-12-07T14:29:30+01:00")  # a restart before Engineering's step
    assert _at(config, "sla", "run", now="2026-12-07T14:31:00+01:00").strip() == "1 SLA step(s) run"
    assert _at(config, "sla", "run", now="2026-12-07T14:40:00+01:00").strip() == "0 SLA step(s) run"
    _at(config, "run", "--once", now="2026-12-07T14:41:00+01:00")
    assert _mails(fresh_sink, CAROL, "") == ["[#1] Escalated to Engineering: Invoice wrong"]

    dovecot.deliver(fresh_user.address, simple("Ann <ann@example.org>", "Re: Invoice wrong [#1]", "<i2@example.org>",
                                               body="Still wrong. I want to speak to a manager.",
                                               to=fresh_user.address))
    _at(config, "run", "--once", now="2026-12-07T15:00:00+01:00")
    # Management's own step (20:30) finds the ticket there: nothing more, nobody mailed twice.
    assert _at(config, "sla", "run", now="2026-12-07T21:00:00+01:00").strip() == "0 SLA step(s) run"
    _at(config, "run", "--once", now="2026-12-07T21:01:00+01:00")
    assert [_mails(fresh_sink, who, "") for who in (BOB, CAROL, DAVE)] == [  # each tier: one mail, all told
        ["[#1] Escalated to Tier 2: Invoice wrong"], ["[#1] Escalated to Engineering: Invoice wrong"],
        ["[#1] Escalated to Management: Invoice wrong"]]
    assert _mails(fresh_sink, ALICE, "SLA breached") == ["[#1] SLA breached (first response): Invoice wrong"]
    shown = json.loads(_at(config, "tickets", "show", "1", "--json", now="2026-12-07T21:02:00+01:00"))
    assert (shown["queue"], shown["sla"]["escalated_to"], shown["sla"]["level"]) == ("eng", "Management", 3)
    assert [(e["detail"]["tier"], e["detail"]["level"], e["detail"].get("step"), e["detail"].get("trigger"),
             e["detail"]["reason"], e["at"][11:16]) for e in shown["events"] if e["what"] == "escalated"] == [
        ("Tier 2", 1, 0, None, "breach of first_response", "11:31"),
        ("Engineering", 2, 1, None, "breach of first_response", "13:31"),
        ("Management", 3, None, "manager", 'the customer asks for a manager ("speak to a manager")', "14:00")]
