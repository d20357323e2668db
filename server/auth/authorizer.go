package auth

import (
	"errors"
	"fmt"
	"sync"

	"github.com/casbin/casbin/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The objects and actions the proglog policy speaks of. Objects are topic
// names; the model in test/model.conf matches them against the policy's
// globs, so "*" in a policy line grants every topic.
const (
	// ObjectAll is the policy glob of every topic, and the object of the
	// checks that concern no topic (ActionJoin): a request for "*" is
	// matched only by a policy line whose object is "*" (or "?"-like globs
	// of one character), never by a topic pattern such as "orders.*".
	ObjectAll = "*"
	// ActionProduce covers Produce, ProduceBatch and ProduceStream on a topic.
	ActionProduce = "produce"
	// ActionConsume covers Consume, ConsumeStream, DescribeTopic and the
	// topics ListTopics shows.
	ActionConsume = "consume"
	// ActionAdmin covers CreateTopic and DeleteTopic.
	ActionAdmin = "admin"
)

// ErrInvalidConfig is wrapped by New when a file name is missing.
var ErrInvalidConfig = errors.New("auth: invalid config")

// Authorizer decides with a Casbin model and policy whether a subject may
// perform an action on an object. It is safe for concurrent use.
type Authorizer struct {
	// enforcer is Casbin's synchronized enforcer, so that a policy reload
	// added later cannot race with Authorize.
	enforcer *casbin.SyncedEnforcer

	// mu guards decisions.
	mu sync.RWMutex
	// decisions caches the enforcer's answers (true: allowed) by request.
	// The policy is loaded once, in New, so an answer never changes (a
	// policy reload, if one is added, must clear it). Casbin's matcher
	// (globMatch over every policy line) took 8-9% of a leader's CPU with 64
	// writers of one record per call (pprof of a 3-node cluster, issue 16);
	// a map lookup takes next to nothing. At most maxCachedDecisions
	// entries: requests name any topic, so the map is cleared when full.
	decisions map[decision]bool
}

// decision is one request the Authorizer answered.
type decision struct{ subject, object, action string }

// maxCachedDecisions bounds Authorizer.decisions.
const maxCachedDecisions = 4096

// New loads the Casbin model (e.g. model.conf) and policy (e.g. policy.csv)
// files. Both are required: Casbin would otherwise start with an empty model
// and deny or fail every request in ways that are hard to trace back to a
// misconfigured path.
func New(model, policy string) (*Authorizer, error) {
	if model == "" {
		return nil, fmt.Errorf("%w: model file is empty", ErrInvalidConfig)
	}
	if policy == "" {
		return nil, fmt.Errorf("%w: policy file is empty", ErrInvalidConfig)
	}
	enforcer, err := casbin.NewSyncedEnforcer(model, policy)
	if err != nil {
		return nil, fmt.Errorf("auth: load model %s and policy %s: %w", model, policy, err)
	}
	return &Authorizer{enforcer: enforcer, decisions: map[decision]bool{}}, nil
}

// Authorize returns nil when the policy lets subject perform action on
// object, and a codes.PermissionDenied status naming them otherwise. An
// error inside Casbin (a malformed matcher) is codes.Internal: it denies too.
func (a *Authorizer) Authorize(subject, object, action string) error {
	key := decision{subject, object, action}
	a.mu.RLock()
	ok, cached := a.decisions[key]
	a.mu.RUnlock()
	if !cached {
		var err error
		ok, err = a.enforcer.Enforce(subject, object, action)
		if err != nil {
			return status.Errorf(codes.Internal, "authorize %s to %s to %s: %v", subject, action, object, err)
		}
		a.mu.Lock()
		if len(a.decisions) >= maxCachedDecisions {
			clear(a.decisions)
		}
		a.decisions[key] = ok
		a.mu.Unlock()
	}
	if !ok {
		return status.Errorf(codes.PermissionDenied, "%s is not permitted to %s on %s", subject, action, object)
	}
	return nil
}
