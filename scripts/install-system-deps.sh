#!/usr/bin/env bash
# Install the Debian packages the test suite needs: Dovecot (IMAP), spamd, Postfix and PostgreSQL
# run as private instances started by the tests, never as system services. Idempotent and quiet.
set -euo pipefail

# spamd is its own package since bookworm; python3-venv lets scripts/test create .venv (and
# devtools/postfix.py the pipe user's venv); chromium renders the HTML report in a test;
# systemd brings systemd-analyze, which verifies and rates the unit (nothing is started by it);
# postgresql brings initdb and postgres for the suite's PostgreSQL run (devtools/postgres.py
# makes a private cluster; the cluster Debian creates on install is never started).
PACKAGES=(dovecot-imapd spamassassin spamc spamd postfix openssl python3 python3-venv chromium systemd postgresql)
# System services those packages ship; we stop/disable them only if we installed them now.
declare -A SERVICES=([dovecot-imapd]=dovecot [spamd]=spamd [postfix]=postfix [postgresql]=postgresql)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "install-system-deps: need root or sudo to run: $*" >&2
        return 1
    fi
}

missing_packages() {
    local package
    for package in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
            echo "$package"
        fi
    done
}

# policy-rc.d exit code 101 = "do not start services" (honoured by invoke-rc.d and
# deb-systemd-invoke), so installing never starts a system-wide dovecot or spamd.
forbid_service_starts() {
    if [ -e /usr/sbin/policy-rc.d ]; then
        return 0
    fi
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
}

stop_and_disable() {
    local service=$1
    if [ -d /run/systemd/system ]; then
        as_root systemctl disable --now "$service" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$service" ]; then
        as_root "/etc/init.d/$service" stop >/dev/null 2>&1 || true
        as_root update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
}

main() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "install-system-deps: not a Debian system; install Dovecot (imapd), spamd/spamc, Postfix," \
             "PostgreSQL (initdb, postgres), openssl, systemd-analyze and Python >= 3.11 yourself." >&2
        exit 1
    fi
    local missing
    mapfile -t missing < <(missing_packages)
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    echo "install-system-deps: installing ${missing[*]}" >&2
    forbid_service_starts
    # Postfix's install asks what kind of mail system this is; "No configuration" leaves
    # /etc/postfix without a main.cf (tests write their own) and never prompts.
    echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
    local package
    for package in "${missing[@]}"; do
        if [ -n "${SERVICES[$package]:-}" ]; then
            stop_and_disable "${SERVICES[$package]}"
        fi
    done
}

main "$@"
