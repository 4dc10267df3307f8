#!/usr/bin/env bash
# Install blelock as a kiosk service on Raspberry Pi OS (Debian bookworm or later).
#
#   sudo scripts/deploy/install-rpi.sh [SOURCE]
#
# SOURCE is what pip installs (default: this checkout). Safe to run again: it upgrades the
# package and keeps existing configuration and secrets. It never starts the service: fill in
# /etc/blelock/secrets.env first, then `systemctl enable --now blelock`.
set -euo pipefail

readonly PREFIX=/opt/blelock
readonly CONFIG_DIR=/etc/blelock
readonly DATA_DIR=/var/lib/blelock
readonly SERVICE_USER=blelock
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly HERE
SOURCE="${1:-$(cd "${HERE}/../.." && pwd)}"
readonly SOURCE

die() { printf 'install-rpi: %s\n' "$*" >&2; exit 1; }

[[ ${EUID} -eq 0 ]] || die "run as root (sudo)"
command -v systemctl >/dev/null || die "systemd is required"

echo "== packages: Python venv support and BlueZ"
apt-get update -q
apt-get install -y -q python3-venv python3-pip bluez
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11 or later is required"

echo "== system user ${SERVICE_USER}"
if ! id -u "${SERVICE_USER}" >/dev/null 2>&1; then
    useradd --system --home-dir "${DATA_DIR}" --no-create-home --shell /usr/sbin/nologin \
        --user-group "${SERVICE_USER}"
fi
# BlueZ's D-Bus policy lets the bluetooth group talk to bluetoothd.
usermod --append --groups bluetooth "${SERVICE_USER}"

echo "== virtual environment in ${PREFIX}/venv"
install -d -m 0755 -o root -g root "${PREFIX}"
[[ -x ${PREFIX}/venv/bin/python ]] || python3 -m venv "${PREFIX}/venv"
"${PREFIX}/venv/bin/pip" install --quiet --upgrade pip
"${PREFIX}/venv/bin/pip" install --quiet --upgrade "${SOURCE}"
if [[ -f ${SOURCE}/README.md ]]; then
    install -m 0644 "${SOURCE}/README.md" "${PREFIX}/README.md"
fi

echo "== data directory ${DATA_DIR}"
install -d -m 0700 -o "${SERVICE_USER}" -g "${SERVICE_USER}" "${DATA_DIR}"

echo "== configuration in ${CONFIG_DIR}"
install -d -m 0750 -o root -g "${SERVICE_USER}" "${CONFIG_DIR}"
if [[ ! -e ${CONFIG_DIR}/config.toml ]]; then
    install -m 0640 -o root -g "${SERVICE_USER}" "${HERE}/config.example.toml" \
        "${CONFIG_DIR}/config.toml"
fi
if [[ ! -e ${CONFIG_DIR}/secrets.env ]]; then
    # Created 0600 before anything is written into it: no moment where it is readable.
    (umask 077 && : >"${CONFIG_DIR}/secrets.env")
    token="$("${PREFIX}/venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
    data_key="$("${PREFIX}/venv/bin/python" -c \
        'import base64, secrets; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())')"
    cat >"${CONFIG_DIR}/secrets.env" <<SECRETS
# Read by systemd (as root) for blelock.service. Mode 0600, root:root. Never commit or print.
# Nokē Core API keys from Nokē: the server key (unlock commands, offline keys) and the mobile
# key (log upload only).
BLELOCK_NOKE_API_KEY=
BLELOCK_NOKE_MOBILE_KEY=
# Bearer token for the local API: give it to the kiosk front end, nobody else.
BLELOCK_SERVE_TOKEN=${token}
# The store's data key (offline keys are sealed with it). Losing it loses the cached offline
# keys (not the logs): keep a copy somewhere safe.
BLELOCK_DATA_KEY=${data_key}
SECRETS
    unset token data_key
fi
chown root:root "${CONFIG_DIR}/secrets.env"
chmod 0600 "${CONFIG_DIR}/secrets.env"

echo "== systemd unit"
install -m 0644 "${HERE}/blelock.service" /etc/systemd/system/blelock.service
systemctl daemon-reload

cat <<DONE

Installed. Next:
  1. put the Nokē API keys into ${CONFIG_DIR}/secrets.env (sudoedit ${CONFIG_DIR}/secrets.env)
  2. review ${CONFIG_DIR}/config.toml
  3. sudo systemctl enable --now blelock
  4. journalctl -u blelock -f         # one JSON line per event
The API token is in ${CONFIG_DIR}/secrets.env (BLELOCK_SERVE_TOKEN).
DONE
