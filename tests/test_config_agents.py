"""[signing], [[agents]] and [queues.NAME]: the issue's minimum as written, and errors that say file, key, expectation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ticketd.daemon.config import ConfigError, load_config
from ticketd.daemon.config_agents import AgentConfig, QueueConfig, SkillGroup, Team
from tests.test_config import MINIMUM, ROOT, write

SIGNING_COMMENT = "# HMAC key; `ticketd keygen FILE` writes one"
KEY = "hunter2-" + "k" * 56  # 64 characters, like `ticketd keygen`; must never show in a message

# Part 1 of issue #8, as written; only the key file's path is this test's own.
ISSUE = """
[signing]
secret_file = "/etc/ticketd/signing.key"   # HMAC key; `ticketd keygen FILE` writes one

[[agents]]
name = "Alice Agent"
address = "alice@example.test"
groups = ["tier1"]

[queues.support]                 # a queue named by rules or by the mailbox
notify = ["tier1"]               # group names or agent addresses
lead = "alice@example.test"      # gets low-satisfaction alerts
"""

BOB = """
[[agents]]
name = "Bob Agent"
address = "Bob@Example.Test"
groups = ["tier1", "tier2"]
"""


def key_file(tmp_path: Path, content: str = KEY + "\n") -> Path:
    path = tmp_path / "signing.key"
    path.write_text(content)
    return path


def config_text(tmp_path: Path, text: str = ISSUE) -> str:
    return MINIMUM + text.replace("/etc/ticketd/signing.key", str(key_file(tmp_path)))


def team(tmp_path: Path, text: str = ISSUE, environ: dict[str, str] | None = None) -> Team:
    loaded = load_config(write(tmp_path, config_text(tmp_path, text)), environ=environ or {}).team
    assert isinstance(loaded, Team)
    return loaded


def refused(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = write(tmp_path, config_text(tmp_path, text))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert "hunter2" not in message and KEY not in message
    return message


def test_the_issues_minimum_loads_as_written(tmp_path: Path) -> None:
    loaded = team(tmp_path)
    assert loaded.agents == (AgentConfig("Alice Agent", "alice@example.test", ("tier1",)),)
    assert loaded.queues == (QueueConfig("support", notify=("tier1",), recipients=("alice@example.test",),
                                         lead="alice@example.test"),)
    assert loaded.recipients("support") == ("alice@example.test",)
    assert loaded.recipients("billing") == ()
    assert loaded.signing is not None and loaded.signing.key == KEY.encode()
    assert loaded.signing.reply_format == "{local}+t{ticket}-{mac}@{domain}"
    assert loaded.signing.require_auth_results is False
    queue = loaded.queue("support")
    assert queue is not None and (queue.assign, queue.max_open_per_agent, queue.unassigned_timeout) == ("none", None, None)


def test_without_agents_and_queues_there_is_no_team(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMUM)).team is None


def test_the_key_never_shows_in_the_configs_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, config_text(tmp_path)))
    assert "hunter2" not in repr(config) and "hunter2" not in repr(config.team)


def test_agents_are_found_by_address_however_it_is_cased_or_quoted(tmp_path: Path) -> None:
    loaded = team(tmp_path, ISSUE + BOB)
    assert loaded.agents[1].address == "bob@example.test"
    assert loaded.agent_by_address("ALICE@Example.TEST") == loaded.agents[0]
    assert loaded.agent_by_address('"bob"@example.test') == loaded.agents[1]
    assert loaded.agent_by_address("alice+x@example.test") is None
    assert loaded.agent_by_address("mallory@example.test") is None


def test_recipients_expand_groups_and_addresses_in_order_without_repeats(tmp_path: Path) -> None:
    text = ISSUE.replace('notify = ["tier1"]', 'notify = ["tier2", "ALICE@example.test", "tier1"]') + BOB
    assert team(tmp_path, text).recipients("support") == ("bob@example.test", "alice@example.test")


def test_assignment_capacity_timeout_and_skills(tmp_path: Path) -> None:
    text = ISSUE.replace('lead =', 'assign = "skills"\nmax_open_per_agent = 12\nunassigned_timeout = 14400\nlead =') + """
[queues.support.skills]
"API & Integrations" = ["API", "webhook"]
"Data & Import" = { keywords = ["import", "export", "CSV"], tags = ["csv"] }
""" + BOB.replace('groups = ["tier1", "tier2"]', 'groups = ["tier1", "Data & Import"]\nskills = ["API & Integrations"]')
    queue = team(tmp_path, text).queue("support")
    assert queue is not None
    assert (queue.assign, queue.max_open_per_agent, queue.unassigned_timeout) == ("skills", 12, 14400.0)
    assert queue.skills == (SkillGroup("API & Integrations", ("API", "webhook")),
                            SkillGroup("Data & Import", ("import", "export", "CSV"), ("csv",)))


def test_a_queue_may_have_a_dedicated_agent(tmp_path: Path) -> None:
    queue = team(tmp_path, ISSUE.replace('lead =', 'assign = "Alice@example.test"\nlead =')).queue("support")
    assert queue is not None and (queue.assign, queue.assignee) == ("agent", "alice@example.test")


def test_the_key_may_come_from_the_environment_or_a_systemd_credential(tmp_path: Path) -> None:
    from_env = team(tmp_path, ISSUE.replace('secret_file = "/etc/ticketd/signing.key"', 'secret_env = "TICKETD_KEY"'),
                    environ={"TICKETD_KEY": KEY})
    assert from_env.signing is not None and from_env.signing.key == KEY.encode()
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "signing").write_text(KEY)
    from_systemd = team(tmp_path, ISSUE.replace('secret_file = "/etc/ticketd/signing.key"',
                                                'secret_credential = "signing"'),
                        environ={"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert from_systemd.signing is not None and from_systemd.signing.key == KEY.encode()


def test_the_shipped_examples_agents_section_loads_once_uncommented(tmp_path: Path) -> None:
    example = (ROOT / "examples" / "ticketd.toml").read_text()
    block = example[example.index("# [signing]"):example.index("\n# [limits]")]
    text = "\n".join(line.removeprefix("#").removeprefix(" ") for line in block.splitlines())
    loaded = team(tmp_path, text)
    assert [agent.name for agent in loaded.agents] == ["Alice Agent", "Bob Agent"]
    assert loaded.signing is not None and loaded.signing.trusted_authserv_id == "mx.example.test"


@pytest.mark.parametrize("old, new, expected", [
    # [signing]
    (ISSUE[:ISSUE.index("[[agents]]")], "", "signing: expected a [signing] table with secret_file, secret_env or "
     "secret_credential (required with [[agents]] or [queues])"),
    ('secret_file = "/etc/ticketd/signing.key"', "", "signing.secret_file: expected the signing key: "),
    ('secret_file = "/etc/ticketd/signing.key"', f'secret = "{KEY}"', "signing.secret: expected secret_file, "
     "secret_env or secret_credential (a key never sits in the configuration file itself)"),
    ('secret_file = "/etc/ticketd/signing.key"', 'secret_file = "/nonexistent/hunter2"',
     "signing.secret_file: expected a readable file (No such file or directory)"),
    ('secret_file = "/etc/ticketd/signing.key"', 'secret_file = "/"', "signing.secret_file: expected a readable file"),
    ('secret_file = "/etc/ticketd/signing.key"', 'secret_env = "HUNTER2_SHORT"',
     "signing.secret_env: expected a key of at least 32 bytes, as `ticketd keygen FILE` writes (the key is not shown)"),
    ('secret_file = "/etc/ticketd/signing.key"', 'secret_env = "UNSET"',
     "signing.secret_env: expected the name of a set environment variable (UNSET is not set)"),
    ('secret_file = "/etc/ticketd/signing.key"', 'secret_credential = "signing"',
     "signing.secret_credential: expected a service started by systemd with LoadCredential="),
    ('secret_file = "/etc/ticketd/signing.key"', 'secret_credential = "/etc/hunter2"',
     "signing.secret_credential: expected the name of a credential (LoadCredential=NAME:...), not a path"),
    (SIGNING_COMMENT, '\nsecret_env = "TICKETD_KEY"',
     "signing.secret_env: expected only one of secret / secret_file / secret_env / secret_credential"),
    (SIGNING_COMMENT, '\nreply_format = "{local}+{ticket}@{domain}"',
     "signing.reply_format: expected a format like '{local}+t{ticket}-{mac}@{domain}': each of"),
    (SIGNING_COMMENT, '\nreply_format = "t{ticket}-{mac}+{local}@{domain}"',
     "signing.reply_format: expected a format like '{local}+t{ticket}-{mac}@{domain}': {local} first"),
    (SIGNING_COMMENT, '\nreply_format = "{local}t{ticket}-{mac}@{domain}"', "{local} followed by the MTA's recipient "
     "delimiter"),
    (SIGNING_COMMENT, '\nreply_format = "{local}+t{ticket}:{mac}@{domain}"', "plain atext characters between"),
    (SIGNING_COMMENT, '\nrequire_auth_results = true', "signing.trusted_authserv_id: expected the authserv-id your "
     "MTA writes in Authentication-Results"),
    (SIGNING_COMMENT, '\ntrusted_authserv_id = "mx.example.test"',
     "signing.trusted_authserv_id: expected require_auth_results = true beside it"),
    (SIGNING_COMMENT, '\nrequire_auth_results = true\ntrusted_authserv_id = "mx; dkim=pass"',
     "signing.trusted_authserv_id: expected an authserv-id like \"mx.example.test\", got 'mx; dkim=pass'"),
    (SIGNING_COMMENT, '\nrequire_auth_results = "yes"', "signing.require_auth_results: expected true or false"),
    (SIGNING_COMMENT, '\nkeyfile = "x"', "signing.keyfile: unknown key"),
    # [[agents]]
    ('name = "Alice Agent"\n', "", "agents[0].name: expected the agent's name, as mail from ticketd shows it (required)"),
    ('name = "Alice Agent"', 'name = " "', "agents[0].name: expected a name of printable characters"),
    ('address = "alice@example.test"', 'address = "Alice <alice@example.test>"',
     "agents[0].address: expected an address like alice@example.com, got 'Alice <alice@example.test>'"),
    ('address = "alice@example.test"', 'address = "Support+alice@EXAMPLE.test"',
     "agents[0].address: expected the agent's own address, not one of ticketd's"),
    ('groups = ["tier1"]', 'groups = ["tier1@example.test"]',
     "agents[0].groups[0]: expected a name (a printable string without @), got 'tier1@example.test'"),
    ('groups = ["tier1"]', 'groups = "tier1"', "agents[0].groups: expected an array of strings, got 'tier1'"),
    ('groups = ["tier1"]', 'groups = ["tier1"]\nskills = ["API"]',
     "agents[0].skills[0]: expected a skill group of a [queues.NAME.skills] table (none is configured), got 'API'"),
    ('groups = ["tier1"]', 'groups = ["tier1"]\nemail = "x"', "agents[0].email: unknown key"),
    ('groups = ["tier1"]', 'groups = ["tier1"]' + BOB.replace("Bob@Example.Test", "ALICE@example.test"),
     "agents[1].address: expected an address no other agent has, got 'alice@example.test'"),
    # [queues.NAME]
    ('notify = ["tier1"]', 'notify = ["tier3"]',
     "queues.support.notify[0]: expected a group of [[agents]] (known: tier1) or an agent's address, got 'tier3'"),
    ('notify = ["tier1"]', 'notify = ["mallory@example.test"]', "queues.support.notify[0]: expected a group of "
     "[[agents]] (known: tier1) or an agent's address, got 'mallory@example.test'"),
    ('lead = "alice@example.test"', 'lead = "tier1"',
     "queues.support.lead: expected the address of an agent in [[agents]], got 'tier1'"),
    ('lead = "alice@example.test"', 'assign = "random"', "queues.support.assign: expected round-robin | "
     "least-open | skills | none, or the address of an agent in [[agents]], got 'random'"),
    ('lead = "alice@example.test"', 'assign = "bob@example.test"',
     "queues.support.assign: expected the address of an agent in [[agents]], got 'bob@example.test'"),
    ('notify = ["tier1"]', 'assign = "round-robin"',
     "queues.support.notify: expected agents to assign to (assign = 'round-robin' picks among those notified)"),
    ('lead = "alice@example.test"', 'assign = "skills"',
     'queues.support.skills: expected a table of skill groups (required with assign = "skills")'),
    ('lead = "alice@example.test"', '[queues.support.skills]\nAPI = ["API"]',
     "queues.support.skills: expected no such table with assign = 'none'"),
    ('lead = "alice@example.test"', 'assign = "skills"\n[queues.support.skills]\nAPI = ["API"]',
     "queues.support.skills.API: expected a skill group that an agent serves"),
    ('lead = "alice@example.test"', 'assign = "skills"\n[queues.support.skills]\ntier1 = []',
     "queues.support.skills.tier1: expected a skill group with keywords or tags"),
    ('lead = "alice@example.test"', 'assign = "skills"\n[queues.support.skills]\ntier1 = "API"',
     "queues.support.skills.tier1: expected an array of keywords, or a table with keywords and tags, got 'API'"),
    ('lead = "alice@example.test"', 'assign = "skills"\n[queues.support.skills]\ntier1 = { words = ["API"] }',
     "queues.support.skills.tier1.words: unknown key"),
    ('lead = "alice@example.test"', 'max_open_per_agent = 0',
     "queues.support.max_open_per_agent: expected a positive integer, got 0"),
    ('lead = "alice@example.test"', 'unassigned_timeout = "4h"',
     "queues.support.unassigned_timeout: expected a positive number of seconds (14400 for 4 hours), got '4h'"),
    ('lead = "alice@example.test"', 'unassigned_timeout = -1',
     "queues.support.unassigned_timeout: expected a positive number of seconds (14400 for 4 hours), got -1.0"),
    ('lead = "alice@example.test"', 'notfy = ["tier1"]', "queues.support.notfy: unknown key"),
    ('[queues.support]', '[queues]\nsupport = "tier1"\n[queues.x]', "queues.support: expected a table"),
])
def test_a_mistake_names_the_file_the_key_and_what_was_expected(tmp_path: Path, old: str, new: str,
                                                                 expected: str) -> None:
    assert old in ISSUE + BOB
    environ = {"TICKETD_KEY": KEY, "HUNTER2_SHORT": "hunter2-short"}
    assert expected in refused(tmp_path, ISSUE.replace(old, new, 1), environ=environ)


def test_queues_without_agents_need_the_signing_section_too(tmp_path: Path) -> None:
    message = refused(tmp_path, "[queues.support]\nnotify = []\n")
    assert "signing: expected a [signing] table" in message


def test_a_short_key_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMUM + ISSUE.replace("/etc/ticketd/signing.key", str(key_file(tmp_path, "hunter2\n"))))
    with pytest.raises(ConfigError, match=re.escape("signing.secret_file: expected a key of at least 32 bytes")) as caught:
        load_config(path)
    assert "hunter2" not in str(caught.value)


def test_a_support_address_too_long_for_a_reply_token_is_refused(tmp_path: Path) -> None:
    long = "s" * 34 + "@example.test"
    text = MINIMUM.replace('address = "support@example.test"', f'address = "{long}"') + \
        ISSUE.replace("/etc/ticketd/signing.key", str(key_file(tmp_path)))
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "signing.reply_format: expected a local part of at most 33 characters, so that " in str(caught.value)
    assert f"(the reply addresses of {long})" in str(caught.value)
