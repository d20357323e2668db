package auth

import "context"

// subjectKey is the context key under which the authenticated subject lives.
type subjectKey struct{}

// WithSubject returns a copy of ctx carrying the authenticated subject (the
// Common Name of the verified client certificate).
func WithSubject(ctx context.Context, subject string) context.Context {
	return context.WithValue(ctx, subjectKey{}, subject)
}

// Subject returns the authenticated subject stored by WithSubject, and false
// when the caller was not authenticated.
func Subject(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(subjectKey{}).(string)
	return s, ok && s != ""
}
