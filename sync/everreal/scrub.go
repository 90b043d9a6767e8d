package everreal

import "github.com/syncerhq/syncer/sync/provider"

// scrub removes the secrets a call just sent from its error: a provider that
// echoes the request (the JSON body, the revoke URL) in error_description
// would otherwise put a password or token into a log line.
func scrub(err error, secrets ...string) error { return provider.Scrub(Name, err, secrets...) }
