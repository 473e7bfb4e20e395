"""The README's quick start: a private Dovecot with sample mail, an SMTP sink, and ticketd on them."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.generate import generate
from bench.run import USER, write_config
from devtools.dovecot import Dovecot
from devtools.smtpsink import SmtpSink



def ticketd(config: Path, *args: str) -> int:
    return subprocess.call([sys.executable, "-m", "ticketd.daemon", "-c", str(config), *args])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=25, help="sample messages to deliver")
    parser.add_argument("--dir", type=Path, help="keep everything here (default: a new temp folder)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="ticketd-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # Dovecot's mail processes run unprivileged and must enter it
    with Dovecot(root / "dovecot") as dovecot, SmtpSink() as sink:
        for message in generate(args.messages, seed=1, to=USER):
            dovecot.deliver(USER, message.raw)
        config = write_config(root / "ticketd.toml", root / "ticketd.db", dovecot, sink)
        rules = Path(__file__).resolve().parents[1] / "examples" / "rules.toml"
        config.write_text(config.read_text() + f'\n[rules]\nfile = "{rules}"\n')  # priorities and queues
        print(f"== Dovecot on 127.0.0.1:{dovecot.port} holds {args.messages} sample messages; "
              f"SMTP sink on 127.0.0.1:{sink.port}")
        print(f"== ticketd -c {config} run --once")
        status = ticketd(config, "run", "--once")
        print("\n== ticketd tickets list")
        ticketd(config, "tickets", "list")
        print(f"\n== the SMTP sink received {len(sink.messages)} acknowledgement(s):")
        for mail in sink.messages:
            print(f"   to {', '.join(mail.rcpt_tos)}: {mail.message['Subject']}")
        print(f"\nSee one ticket:  .venv/bin/ticketd -c {config} tickets show 1")
        return status


if __name__ == "__main__":
    sys.exit(main())
