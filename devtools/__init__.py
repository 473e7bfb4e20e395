"""Development servers on 127.0.0.1 (Dovecot, an SMTP sink, spamd) for tests, benchmarks and the quick start."""
