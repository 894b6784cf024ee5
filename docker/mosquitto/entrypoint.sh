#!/bin/sh
# Entry point of the mosquitto container (docker-compose.yml): writes the
# password file for the users in acl from .env, then runs the image's own entry
# point. The file is hashed by mosquitto_passwd and kept on a tmpfs
# (/run/mosquitto), so no password or hash is ever stored on disk or committed.
#
# MOSQUITTO_RUN_DIR and MOSQUITTO_ENTRYPOINT exist so that tests/test_deploy.py
# can run this script outside the container.
set -eu

: "${VOICEBOT_MQTT_PASSWORD:?set VOICEBOT_MQTT_PASSWORD in .env (see docker/env.example)}"
: "${MQTT_READER_PASSWORD:?set MQTT_READER_PASSWORD in .env (see docker/env.example)}"
: "${MQTT_OPS_PASSWORD:?set MQTT_OPS_PASSWORD in .env (see docker/env.example)}"

run=${MOSQUITTO_RUN_DIR:-/run/mosquitto}
conf=$(dirname "$0")

umask 077
mkdir -p "$run"
rm -f "$run/passwd"
touch "$run/passwd"
mosquitto_passwd -b "$run/passwd" voicebot "$VOICEBOT_MQTT_PASSWORD"
mosquitto_passwd -b "$run/passwd" reader "$MQTT_READER_PASSWORD"
mosquitto_passwd -b "$run/passwd" ops "$MQTT_OPS_PASSWORD"
cp "$conf/acl" "$run/acl"
# mosquitto reads both after dropping root to its own user.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto:mosquitto "$run" "$run/passwd" "$run/acl"
fi

exec "${MOSQUITTO_ENTRYPOINT:-/docker-entrypoint.sh}" "$@"
