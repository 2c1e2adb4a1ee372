package container

import "path/filepath"

// LockPath is the container's lock file, which its holder keeps flocked
// while it runs (see Hold): others may test it to tell a live holder from
// a dead one.
func (c *Container) LockPath() string { return filepath.Join(c.Dir, lockName) }
