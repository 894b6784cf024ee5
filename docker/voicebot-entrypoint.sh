#!/bin/sh
# The voicebot container's command.
#
#   campaign (the default): voicebot run "$VOICEBOT_DIALPLAN" with the options
#            below taken from the environment (docker-compose.yml sets them).
#   anything else: passed to the voicebot command as it is, e.g.
#            docker compose run --rm voicebot validate /etc/voicebot/dialplans/asterisk_en.yaml
#
# VOICEBOT_DIALPLAN     the dialplan inside the container (required)
# VOICEBOT_CONTACTS     a CSV/XLSX to import; optional on a rerun (the store keeps the contacts)
# VOICEBOT_BROKER       mqtt://user@host:port; the password is read by voicebot from
#                       VOICEBOT_MQTT_PASSWORD, never passed on the command line
# VOICEBOT_BIND         the address for SIP and RTP; default: this container's address
#                       on its network, which is what Asterisk must send media to
#                       (0.0.0.0 would be advertised in SDP and break audio)
# VOICEBOT_CONCURRENCY  overrides campaign.max_concurrent_calls
# VOICEBOT_RUN_ARGS     more options for `voicebot run`, e.g. "--until-idle --grace 60"
set -eu

if [ "${1:-campaign}" != campaign ]; then
    exec voicebot "$@"
fi

: "${VOICEBOT_DIALPLAN:?set VOICEBOT_DIALPLAN to the dialplan file inside the container}"

if [ -z "${VOICEBOT_BIND:-}" ]; then
    # Docker writes the container's own address for its hostname into /etc/hosts.
    VOICEBOT_BIND=$(python -c 'import socket; print(socket.gethostbyname(socket.gethostname()))')
fi

set -- run "$VOICEBOT_DIALPLAN" --bind "$VOICEBOT_BIND"
if [ -n "${VOICEBOT_CONTACTS:-}" ]; then
    set -- "$@" --contacts "$VOICEBOT_CONTACTS"
fi
if [ -n "${VOICEBOT_BROKER:-}" ]; then
    set -- "$@" --broker "$VOICEBOT_BROKER"
else
    set -- "$@" --no-broker
fi
if [ -n "${VOICEBOT_CONCURRENCY:-}" ]; then
    set -- "$@" --concurrency "$VOICEBOT_CONCURRENCY"
fi
# Word splitting is wanted here: it is a list of options.
# shellcheck disable=SC2086
exec voicebot "$@" ${VOICEBOT_RUN_ARGS:-}
