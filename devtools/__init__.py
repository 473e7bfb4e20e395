"""Development servers on 127.0.0.1 (Dovecot, SMTP sink, spamd) for tests, benchmarks, demos."""
