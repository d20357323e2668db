package auth

import "fmt"

// ActionJoin is the action a node's certificate subject needs to become a
// Raft voter: the agent's leader asks Authorize(subject, ObjectAll,
// ActionJoin) with the subject of the certificate a joining node presents
// on its Raft port, before it adds the node to the Raft configuration.
const ActionJoin = "join"

// Names reports whether any policy line grants action, to anyone. The agent
// uses it to tell a policy that says who may join (lines with ActionJoin)
// from one written before joins were authorized, which says nothing about
// them.
func (a *Authorizer) Names(action string) (bool, error) {
	rules, err := a.enforcer.GetFilteredPolicy(2, action)
	if err != nil {
		return false, fmt.Errorf("auth: read policy lines for %s: %w", action, err)
	}
	return len(rules) > 0, nil
}
