#!/bin/bash
# Entry point of the Asterisk container (docker-compose.yml): writes this
# directory's *.conf into /etc/asterisk, each {{NAME}} replaced by the
# environment variable NAME, then runs the image's own entry point with the
# container's command. Secrets thus live in .env only, never in a file that is
# committed. A missing variable stops the container with its name.
#
# ASTERISK_TEMPLATES, ASTERISK_CONFIG_DIR and ASTERISK_ENTRYPOINT exist so that
# tests/test_deploy.py can run this script outside the container.
set -euo pipefail

src=${ASTERISK_TEMPLATES:-$(dirname "$0")}
dst=${ASTERISK_CONFIG_DIR:-/etc/asterisk}
entrypoint=${ASTERISK_ENTRYPOINT:-/usr/local/bin/entrypoint.sh}

# The rendered files hold passwords: readable by Asterisk's group only.
umask 027
for template in "$src"/*.conf; do
    name=$(basename "$template")
    text=$(<"$template")
    for var in $(grep -o '{{[A-Za-z_][A-Za-z0-9_]*}}' "$template" | sort -u | tr -d '{}' || true); do
        value=${!var:-}
        if [ -z "$value" ]; then
            echo "render-config: $name needs $var: set it in .env (see docker/env.example)" >&2
            exit 1
        fi
        # ";" starts a comment in Asterisk's config files and a line break
        # would start a new option: either would silently cut the value.
        case $value in
            *';'* | *$'\n'* | ' '* | *' ')
                echo "render-config: $var must not contain ';', a line break or surrounding spaces" >&2
                exit 1
                ;;
        esac
        text=${text//"{{$var}}"/"$value"}
    done
    printf '%s\n' "$text" >"$dst/$name"
    chmod 0640 "$dst/$name"
    # Asterisk reads its configuration after dropping root (-U asterisk).
    if [ "$(id -u)" = 0 ] && id asterisk >/dev/null 2>&1; then
        chown asterisk:asterisk "$dst/$name"
    fi
done

exec "$entrypoint" "$@"
