// Package auth says who may do what on the admin side of a Vigil server:
// named users with roles, how they prove who they are (a password for the
// console, an API token for the CLI, the server's bootstrap admin.token),
// and the audit log of what they did. This file is the contract the
// server, the console and the CLI share; the rest of the package
// implements it over the server's store.
package auth

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Role is what a user may do.
type Role string

// The roles, each allowed what the one before it is and more.
const (
	// Viewer reads everything.
	Viewer Role = "viewer"
	// Operator also issues commands and restores quarantined files.
	Operator Role = "operator"
	// Admin also manages users and rotates the enrollment secret.
	Admin Role = "admin"
)

// Roles are the roles, least allowed first.
var Roles = []Role{Viewer, Operator, Admin}

// ParseRole parses a role's name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q: want viewer, operator or admin", s)
}

// Action is something a role may be allowed.
type Action string

// The actions.
const (
	Read         Action = "read"          // every page and list
	Issue        Action = "issue"         // send commands
	Restore      Action = "restore"       // restore quarantined files
	ManageUsers  Action = "manage-users"  // add, remove, change users; others' tokens
	RotateSecret Action = "rotate-secret" // replace the enrollment secret
)

// Can reports whether r is allowed a.
func (r Role) Can(a Action) bool {
	switch a {
	case Read:
		return r == Viewer || r == Operator || r == Admin
	case Issue, Restore:
		return r == Operator || r == Admin
	case ManageUsers, RotateSecret:
		return r == Admin
	}
	return false
}

// How a Principal proved who it is.
const (
	ViaPassword  = "password"  // a console login
	ViaToken     = "token"     // a user's API token
	ViaBootstrap = "bootstrap" // the server's admin.token: an admin
)

// BootstrapUser is the Principal.User of the server's admin.token.
const BootstrapUser = "admin.token"

// Principal is who a request acts for.
type Principal struct {
	User string
	Role Role
	Via  string // ViaPassword, ViaToken or ViaBootstrap
}

// Errors of an Authenticator.
var (
	// ErrBadCredentials: no such user, a wrong password, an unknown or
	// revoked token. The message does not say which.
	ErrBadCredentials = errors.New("wrong user name or password")
	// ErrThrottled: too many failed logins lately, for this user or from
	// this address; RetryAfter says how long to wait.
	ErrThrottled = errors.New("too many failed logins: try again later")
)

// ThrottledError is ErrThrottled with the time to wait.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v (in %v)", ErrThrottled, e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrThrottled) hold.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// Authenticator checks who a request is. Both methods audit what they
// decide (logins, successful or not), with addr, the client's address.
type Authenticator interface {
	// Login checks a user's password (the console).
	Login(ctx context.Context, user, password, addr string) (Principal, error)
	// Token checks an API token, a user's or the bootstrap admin.token.
	Token(ctx context.Context, token, addr string) (Principal, error)
}

// Event is one entry of the audit log.
type Event struct {
	Time   time.Time
	Actor  string // the user; for a failed login, the name tried
	Addr   string // the client's address
	Action string // one of the Event constants
	Target string // what it acted on: a command's sequence, a user, an agent
	Detail string // what it did, for people: a command line, a role change
	OK     bool   // it was done (false: refused)
}

// Actions recorded in the audit log.
const (
	EventLogin        = "login"
	EventLogout       = "logout"
	EventCommand      = "command"       // Target: the sequence number; Detail: the command
	EventRestore      = "restore"       // a restore command; Target: the quarantine id
	EventUserAdd      = "user-add"      // Target: the user
	EventUserRemove   = "user-remove"   // Target: the user
	EventUserPassword = "user-password" // Target: the user
	EventUserRole     = "user-role"     // Target: the user; Detail: old → new
	EventTokenAdd     = "token-add"     // Target: the user; Detail: the token's name
	EventTokenRemove  = "token-remove"  // Target: the user; Detail: the token's name
	EventSecretRotate = "secret-rotate"
	EventDenied       = "denied" // a request its role does not allow; Detail: what
)

// Auditor records audit events.
type Auditor interface {
	Audit(ctx context.Context, e Event) error
}
