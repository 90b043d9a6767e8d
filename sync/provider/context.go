package provider

import "context"

type connectionKey struct{}

// WithConnection tells the calls made with ctx which connection they are
// for, so what they report (a retry, say) can name it.
func WithConnection(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, connectionKey{}, name)
}

// ConnectionOf is the connection name WithConnection put in ctx, or "".
func ConnectionOf(ctx context.Context) string {
	name, _ := ctx.Value(connectionKey{}).(string)
	return name
}
