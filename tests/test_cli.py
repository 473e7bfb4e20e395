"""The ticketd command line as a sysadmin and an MTA use it: real processes, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from tests.support import backend
from tests.support.daemon import PROJECT, cli, cli_json, write_config
from tests.support.mail import simple


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    done = cli(config, "check-config")
    assert done.returncode == 0
    assert b"OK" in done.stdout


def test_check_config_names_the_file_and_key_of_a_mistake(tmp_path: Path) -> None:
    config = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    config.write_text(config.read_text().replace('security = "none"', 'security = "sometimes"', 1))
    done = cli(config, "check-config")
    assert done.returncode == 78
    assert f"{config}: smtp.security: expected one of tls | starttls | none".encode() in done.stderr
    assert b"Traceback" not in done.stderr


def test_run_once_processes_mail_and_tickets_json_has_the_promised_fields(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    dovecot.deliver(fresh_user.address, simple("Ann <ann@example.org>", "Need help", "<cli1@example.org>",
                                               body="Please help."))
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)])
    done = cli(config, "run", "--once")
    assert done.returncode == 0, done.stderr.decode()

    [listed] = cli_json(config, "tickets", "list", "--json")
    for key in ("number", "subject", "status", "priority", "category", "queue", "requester", "created_at",
                "article_count"):
        assert key in listed
    shown = cli_json(config, "tickets", "show", str(listed["number"]), "--json")
    [article] = shown["articles"]
    assert {k: article[k] for k in ("direction", "from", "message_id")} == {
        "direction": "in", "from": "Ann <ann@example.org>", "message_id": "<cli1@example.org>"}
    assert article["date"].startswith("2026-11-24T10:00:00")
    assert "Please help." in article["text"]
    assert len(fresh_sink.messages) == 1


def test_ingest_stores_one_message_from_stdin(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = write_config(tmp_path, 10143, fresh_sink.port, [("support", "support@example.test")])
    done = cli(config, "ingest", stdin=simple("ann@example.org", "Piped", "<pipe@example.org>"))
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["ticket"] == 1
    again = cli(config, "ingest", stdin=simple("ann@example.org", "Piped", "<pipe@example.org>"))
    assert json.loads(again.stdout)["status"] == "duplicate"
    assert len(cli_json(config, "tickets", "list", "--json")) == 1


def test_ingest_asks_the_mta_to_retry_when_the_database_is_unusable(tmp_path: Path) -> None:
    config = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    config.write_text(config.read_text().replace(backend.url(tmp_path / "ticketd.db"), backend.unusable_url(tmp_path)))
    done = cli(config, "ingest", stdin=simple("ann@example.org", "x", "<x@example.org>"))
    assert done.returncode == 75


def test_ingest_quarantines_unreadable_input_with_a_reason(tmp_path: Path) -> None:
    config = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    done = cli(config, "ingest", stdin=b"")
    assert done.returncode == 0, done.stderr.decode()
    [held] = cli_json(config, "quarantine", "list", "--json")
    assert held["reason"].startswith("unreadable")


def test_run_stops_cleanly_on_sigterm_after_handling_mail(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.support.daemon import PROJECT
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)])
    daemon = subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "run"],
                              env=dict(os.environ, PYTHONPATH=str(PROJECT)), cwd=PROJECT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        dovecot.deliver(fresh_user.address, simple("ann@example.org", "Daemon mode", "<term@example.org>"))
        assert fresh_sink.wait_for(1, timeout=30), "no acknowledgement from the running daemon"
        daemon.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, err = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err.decode()[-2000:]
    assert time.monotonic() - started < 15
    assert b"stopped" in err
    assert len(cli_json(config, "tickets", "list", "--json")) == 1


def test_check_config_names_an_unknown_filter_and_a_bad_rule(tmp_path: Path) -> None:
    config = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    base = config.read_text()
    config.write_text(base + '\n[filters]\npipeline = ["bounce", "virus"]\n')
    done = cli(config, "check-config")
    assert done.returncode == 78
    assert f"{config}: filters.pipeline[1]: expected one of".encode() in done.stderr and b"'virus'" in done.stderr
    config.write_text(base + '\n[[rules.rule]]\nname = "urgent"\nregex = "(unclosed"\npriority = "P1"\n')
    done = cli(config, "check-config")
    assert done.returncode == 78
    assert str(config).encode() in done.stderr and b"(urgent)" in done.stderr and b"invalid regex" in done.stderr


# Start-up time is import time (issue 7): a command imports the ORM, the IMAP and SMTP clients,
# the spamd client or flufl.bounce only when it uses them.
_HEAVY = ("tortoise", "aioimaplib", "aiosmtplib", "aiospamc", "flufl.bounce")


def _imported_by(config: Path, *args: str) -> set[str]:
    """Which of _HEAVY ``ticketd -c CONFIG ARGS`` had imported by its end."""
    code = (f"import sys\nfrom daemon.cli import main\ncode = main({['-c', str(config), *args]!r})\n"
            f"print('imported:', *(m for m in {_HEAVY!r} if m in sys.modules))\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, cwd=PROJECT,
                          env=dict(os.environ, PYTHONPATH=str(PROJECT)))
    assert done.returncode == 0, done.stderr.decode()
    return set(done.stdout.decode().splitlines()[-1].split()[1:])


def test_commands_import_only_the_modules_they_use(tmp_path: Path) -> None:
    config = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    assert _imported_by(config, "check-config").isdisjoint(_HEAVY)
    assert _imported_by(config, "tickets", "list") & set(_HEAVY) == {"tortoise"}


def test_the_parse_workers_load_the_mime_parser_before_their_first_batch() -> None:
    # `run` forks the pool before it imports the daemon (daemon.start): each worker imports the
    # parser as it starts, on its own core, so that the first batch does not wait for it.
    probe = "' '.join(m for m in ('ticketd.daemon.parsers.message', 'mailparser') if m in __import__('sys').modules)"
    code = (f"import sys\nfrom daemon import start\npool = start.parse_pool(1)\n"
            f"print('parent:', 'mailparser' in sys.modules)\nprint(pool.submit(eval, {probe!r}).result())\n"
            "pool.shutdown()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, cwd=PROJECT,
                          env=dict(os.environ, PYTHONPATH=str(PROJECT)))
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == ["parent: False", "ticketd.daemon.parsers.message mailparser"]


def test_start_up_pauses_the_garbage_collector_and_leaves_it_running(tmp_path: Path) -> None:
    # main() starts with the collector off and freezes what start-up built (see cli._starting);
    # the command itself, and a config error, must find it on again.
    config = write_config(tmp_path, 10143, 2525, [("support", "support@example.test")])
    broken = tmp_path / "broken.toml"
    broken.write_text("[smtp]\nport = 0\n")
    for path, expected in ((config, 0), (broken, 78)):
        code = (f"import gc, sys\nfrom daemon import cli\nchecked = []\nreal = cli._check\n"
                f"async def check(*args):\n    checked.append(gc.isenabled())\n    return await real(*args)\n"
                f"cli._check = check\ncode = cli.main(['-c', {str(path)!r}, 'check-config'])\n"
                f"print(code, checked, gc.isenabled(), gc.get_freeze_count() > 0)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, cwd=PROJECT,
                              env=dict(os.environ, PYTHONPATH=str(PROJECT)))
        ran = "[True]" if expected == 0 else "[]"
        assert done.stdout.decode().splitlines()[-1].split() == [str(expected), ran, "True", "True"], \
            done.stderr.decode()
