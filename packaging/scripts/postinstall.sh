#!/bin/sh
# After install or upgrade: create the syncer user and group, tell systemd
# about the units. Nothing is enabled or started: that is the admin's choice
# (systemctl enable --now syncer.service, or syncer.timer).
set -e
if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers syncer.conf
elif ! getent passwd syncer >/dev/null; then
	# Without systemd-sysusers, the same entry by hand.
	groupadd --system syncer 2>/dev/null || true
	useradd --system --gid syncer --home-dir /var/lib/syncer --no-create-home \
		--shell /usr/sbin/nologin --comment "syncer daemon" syncer
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	# An upgrade restarts a service the admin runs, so the new binary is used.
	if [ "$1" = configure ] && [ -n "$2" ] || [ "$1" = 2 ]; then
		systemctl try-restart syncer.service || true
	fi
fi
exit 0
