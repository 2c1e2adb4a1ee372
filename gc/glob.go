package gc

import (
	"fmt"
	"path"
	"strings"
)

// MatchRepository reports whether the repository name matches glob: the
// glob's components, split at "/", match the name's components one for one
// with path.Match ("team/*" matches "team/app", not "team/app/x"), except
// that a component "**" matches any number of components, none included
// ("team/**" matches "team", "team/app" and "team/app/x"; "**" matches every
// repository). It returns an error only for a malformed glob (see
// ValidateGlob).
func MatchRepository(glob, name string) (bool, error) {
	if err := ValidateGlob(glob); err != nil {
		return false, err
	}
	return matchComponents(strings.Split(glob, "/"), strings.Split(name, "/")), nil
}

// ValidateGlob checks a repository glob for MatchRepository: not empty, and
// each component valid for path.Match.
func ValidateGlob(glob string) error {
	if glob == "" {
		return fmt.Errorf("empty repository glob")
	}
	for _, c := range strings.Split(glob, "/") {
		if c == "**" {
			continue
		}
		if c == "" {
			return fmt.Errorf("repository glob %q has an empty component", glob)
		}
		if _, err := path.Match(c, ""); err != nil {
			return fmt.Errorf("repository glob %q: %w", glob, err)
		}
	}
	return nil
}

func matchComponents(glob, name []string) bool {
	for len(glob) > 0 {
		if glob[0] == "**" {
			// Collapse runs of "**", then try every split of the rest.
			for len(glob) > 0 && glob[0] == "**" {
				glob = glob[1:]
			}
			if len(glob) == 0 {
				return true
			}
			for i := range name {
				if matchComponents(glob, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(glob[0], name[0]); !ok {
			return false
		}
		glob, name = glob[1:], name[1:]
	}
	return len(name) == 0
}
