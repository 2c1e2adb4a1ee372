package auth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// ErrInvalidScope is returned by ParseScope for a string that is not "type:name:actions".
var ErrInvalidScope = errors.New("auth: invalid scope")

// Resource types and actions of the Docker token specification.
const (
	TypeRepository = "repository"
	TypeRegistry   = "registry"

	ActionPull   = "pull"
	ActionPush   = "push"
	ActionDelete = "delete"
	ActionAll    = "*" // covers every action on the resource
)

// Access is one Docker token "access" entry:
// {"type":"repository","name":"a/b","actions":["pull","push"]}.
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// ParseScope parses one scope of the Docker token specification, "type:name:actions"
// such as "repository:a/b:pull,push" or "registry:catalog:*". It splits at the first
// and the last colon, so a name carrying a host:port prefix ("repository:h:5000/a:pull")
// keeps its colon. Empty actions between commas are dropped; at least one must remain.
func ParseScope(s string) (Access, error) {
	first := strings.IndexByte(s, ':')
	last := strings.LastIndexByte(s, ':')
	if first <= 0 || last == first || last == len(s)-1 || strings.ContainsAny(s, " \t\r\n\"\\") {
		return Access{}, fmt.Errorf("%w: %q is not type:name:actions", ErrInvalidScope, s)
	}
	a := Access{Type: s[:first], Name: s[first+1 : last]}
	if a.Name == "" {
		return Access{}, fmt.Errorf("%w: %q has an empty name", ErrInvalidScope, s)
	}
	for act := range strings.SplitSeq(s[last+1:], ",") {
		if act != "" {
			a.Actions = append(a.Actions, act)
		}
	}
	if len(a.Actions) == 0 {
		return Access{}, fmt.Errorf("%w: %q has no actions", ErrInvalidScope, s)
	}
	return a, nil
}

// String returns a in scope syntax, "type:name:action,action".
func (a Access) String() string {
	return a.Type + ":" + a.Name + ":" + strings.Join(a.Actions, ",")
}

// Phrase says in words what a grants, for messages to people:
// `push to repository "a/b"`, `pull from and push to repository "a/b"`,
// `list the catalog`.
func (a Access) Phrase() string {
	if a.Type == TypeRegistry && a.Name == "catalog" {
		return "list the catalog"
	}
	verbs := make([]string, 0, len(a.Actions))
	for _, act := range a.Actions {
		switch act {
		case ActionPull:
			verbs = append(verbs, "pull from")
		case ActionPush:
			verbs = append(verbs, "push to")
		case ActionDelete:
			verbs = append(verbs, "delete from")
		case ActionAll:
			verbs = append(verbs, "administer")
		default:
			verbs = append(verbs, fmt.Sprintf("%q", act))
		}
	}
	return strings.Join(verbs, " and ") + " " + a.Type + " " + fmt.Sprintf("%q", a.Name)
}

// Required returns the access a request needs, following the Docker token specification
// and distribution's mapping:
//
//	route with a repository name   GET, HEAD: pull   POST, PUT, PATCH: pull,push   DELETE: delete
//	                               (DELETE of an upload, cancelling it: push)
//	                               any other method: * (everything; the router answers 405 anyway)
//	/v2/_catalog                   registry:catalog:*
//	/v2/_berth/usage               registry:catalog:* (it names every repository too)
//	anything else (/v2/)           nothing: a valid identity is enough
//
// route is the route template ("/v2/{name}/manifests/{reference}", "/v2/_catalog") and
// name the repository name, "" for routes without one. Which routes skip authentication
// altogether (health, readiness, metrics) is the caller's decision.
//
// The source of a cross-repository mount (POST ...?mount=D&from=A) is deliberately not
// required: the registry asks Identity.Allowed(Access{TypeRepository, A, pull}) and
// falls back to an ordinary upload when it is not granted, as the distribution spec says.
func Required(method, route, name string) []Access {
	if route == "/v2/_catalog" || route == "/v2/_berth/usage" {
		return []Access{{Type: TypeRegistry, Name: "catalog", Actions: []string{ActionAll}}}
	}
	if name == "" {
		return nil
	}
	var actions []string
	switch method {
	case http.MethodGet, http.MethodHead:
		actions = []string{ActionPull}
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		actions = []string{ActionPull, ActionPush}
	case http.MethodDelete:
		actions = []string{ActionDelete}
		if route == "/v2/{name}/blobs/uploads/{id}" {
			// Cancelling an upload deletes nothing stored: whoever may
			// push may give up their own upload.
			actions = []string{ActionPush}
		}
	default:
		actions = []string{ActionAll}
	}
	return []Access{{Type: TypeRepository, Name: name, Actions: actions}}
}

// Allowed reports whether granted covers every action of need. Type and name must match
// exactly: access to "a/b" covers neither "a/b/c" nor "a/bc". A granted "*" action covers
// every action; a needed "*" is covered only by a granted "*". Actions may be spread over
// several entries for the same resource. A need without actions is never allowed.
func Allowed(granted []Access, need Access) bool {
	if len(need.Actions) == 0 {
		return false
	}
	for _, act := range need.Actions {
		if !grants(granted, need.Type, need.Name, act) {
			return false
		}
	}
	return true
}

func grants(granted []Access, typ, name, action string) bool {
	for _, g := range granted {
		if g.Type == typ && g.Name == name &&
			(slices.Contains(g.Actions, ActionAll) || slices.Contains(g.Actions, action)) {
			return true
		}
	}
	return false
}
