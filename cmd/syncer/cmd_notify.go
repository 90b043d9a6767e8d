package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/syncerhq/syncer/monitor"
	"github.com/syncerhq/syncer/store"
)

// cmdNotify sends one unit_failed event through SYNCER_NOTIFY_URLS and
// SYNCER_NOTIFY_COMMAND: the OnFailure= target (systemd/syncer-notify@.service)
// runs it with the failed unit's name. It reads snapshots.db, if it can, to
// name the connections that need attention, and writes nothing.
func cmdNotify(e env, args []string) error {
	fs := newFlagSet("notify", e)
	if err := parseFlags(fs, e, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("notify takes the failed unit's name (systemd passes it as %%i)")
	}
	unit := fs.Arg(0)
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	n, err := a.notifier()
	if err != nil {
		return err
	}
	if !n.Enabled() {
		return fmt.Errorf("%w: nothing to notify: set SYNCER_NOTIFY_URLS or SYNCER_NOTIFY_COMMAND", errConfig)
	}
	host, _ := os.Hostname()
	ev := monitor.Event{
		Event: monitor.EventUnitFailed, Unit: unit, Host: host, Time: time.Now().UTC().Format(time.RFC3339),
		Fix:     fmt.Sprintf("journalctl -u %s; syncer status", unit),
		Message: fmt.Sprintf("The systemd unit %s failed on %s.", unit, host),
	}
	if conns, err := a.readConnections(e.ctx); err == nil {
		var names []string
		for _, c := range conns {
			st := statusOf(c, time.Now().UTC(), a.cfg)
			if st.NeedsAttention {
				names = append(names, c.Name)
				if st.Fix != "" && c.State == store.StateReauthRequired {
					ev.Fix += "; " + reconnectCommand(c)
				}
			}
		}
		if len(names) > 0 {
			ev.Message += " Connections needing attention: " + strings.Join(names, ", ") + "."
		}
	}
	if err := n.Send(e.ctx, ev); err != nil {
		return attentionError{"the notification was not delivered everywhere (see the log)"}
	}
	fmt.Fprintf(e.stdout, "notified: %s failed\n", unit)
	return nil
}
