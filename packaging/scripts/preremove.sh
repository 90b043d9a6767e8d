#!/bin/sh
# Before removal (not before an upgrade): stop and disable the units.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl stop syncer.timer syncer.service syncer-once.service 2>/dev/null || true
	fi
	systemctl --no-reload disable syncer.timer syncer.service 2>/dev/null || true
	;;
esac
exit 0
