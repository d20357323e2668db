// Package auth authenticates callers from their verified client certificate
// and authorizes their actions with a Casbin model and policy.
package auth
