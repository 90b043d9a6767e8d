#!/bin/sh
# After removal. The data in /var/lib/syncer (history and tokens) is kept,
# even on purge: delete it by hand if you mean to. Purge removes
# /etc/syncer/syncer.env (dpkg does, as a conffile).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
if [ "$1" = purge ] && [ -d /var/lib/syncer ]; then
	echo "syncer: /var/lib/syncer (snapshots and tokens) was kept; remove it by hand if it is no longer needed" >&2
fi
exit 0
