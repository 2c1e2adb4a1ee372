package container

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Container names: each container has one, unique in its store, given
// with --name or made up by GenerateName. The index of names is a
// directory of small files under the state directory (see doc.go):
// names/<name> holds the ID of the container that has it, and the
// container's own directory holds its name in a file "name". Every change
// of the index (a new container, a rename, a removal) happens under an
// exclusive flock of names/.lock, so that two commands that give the same
// name at once cannot both succeed; an entry whose container is gone (a
// command killed half way) is taken over.

// nameFile is the file of a container's directory that holds its name.
const nameFile = "name"

// ValidName reports whether name follows docker's container name grammar:
// [a-zA-Z0-9][a-zA-Z0-9_.-]+ (two characters at least).
func ValidName(name string) bool {
	if len(name) < 2 || len(name) > 253 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// NameError is a name that cannot be given: Holder is the ID of the
// container that has it already, or empty when the name breaks the
// grammar. It wraps ErrExists or ErrInvalidName.
type NameError struct {
	Name   string
	Holder string
}

func (e *NameError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed", e.Name)
	}
	return fmt.Sprintf("Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", "/"+e.Name, e.Holder)
}

// Unwrap says which class of error this is.
func (e *NameError) Unwrap() error {
	if e.Holder == "" {
		return ErrInvalidName
	}
	return ErrExists
}

// Words of generated names: an adjective and a noun, as docker makes them
// (these lists are berth's own: harbour and sea words).
var (
	nameAdjectives = []string{
		"amber", "ancient", "azure", "bold", "brave", "breezy", "bright", "calm", "clever", "coastal",
		"cobalt", "crisp", "dashing", "deep", "eager", "gentle", "golden", "hardy", "hidden", "jolly",
		"keen", "lively", "lucky", "misty", "nimble", "northern", "patient", "proud", "quiet", "rapid",
		"salty", "silver", "steady", "stormy", "sunny", "swift", "tidal", "tranquil", "trusty", "windy",
	}
	nameNouns = []string{
		"anchor", "barge", "beacon", "bollard", "bosun", "buoy", "cabin", "capstan", "cargo", "compass",
		"coral", "cove", "crane", "dinghy", "dock", "ferry", "galley", "gull", "harbour", "hull",
		"jetty", "keel", "lantern", "lighthouse", "mast", "mooring", "oar", "pelican", "pier", "quay",
		"rudder", "sail", "schooner", "skiff", "tide", "tugboat", "wharf", "winch", "yacht", "yardarm",
	}
)

// GenerateName returns a random adjective_noun name; retry > 0 adds a
// digit, as docker does when the first tries were taken.
func GenerateName(retry int) string {
	pick := func(words []string) string {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(words))))
		if err != nil {
			return words[0]
		}
		return words[n.Int64()]
	}
	name := pick(nameAdjectives) + "_" + pick(nameNouns)
	if retry > 0 {
		n, _ := rand.Int(rand.Reader, big.NewInt(10))
		name += fmt.Sprint(n.Int64())
	}
	return name
}

// lockNames takes the exclusive lock of the name index until unlock.
func (s *Store) lockNames() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(s.names, ".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// nameHolder returns the ID of the container that has name, "" when no
// live container has it (a stale entry counts as none). The caller holds
// the names lock or accepts a racing answer.
func (s *Store) nameHolder(name string) string {
	b, err := os.ReadFile(filepath.Join(s.names, name))
	if err != nil {
		return ""
	}
	id := strings.TrimSpace(string(b))
	if !validID(id) {
		return ""
	}
	if got, err := os.ReadFile(filepath.Join(s.dir, id, nameFile)); err != nil || strings.TrimSpace(string(got)) != name {
		return "" // the container is gone, or was renamed and died before the index followed
	}
	return id
}

// claimName records name for id in the index; the caller holds the names
// lock. It fails with a *NameError when a live container has it.
func (s *Store) claimName(name, id string) error {
	if !ValidName(name) {
		return &NameError{Name: name}
	}
	if holder := s.nameHolder(name); holder != "" && holder != id {
		return &NameError{Name: name, Holder: holder}
	}
	return writeAtomic(filepath.Join(s.names, name), []byte(id+"\n"))
}

// dropName removes name from the index if it points at id; the caller
// holds the names lock.
func (s *Store) dropName(name, id string) {
	p := filepath.Join(s.names, name)
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == id {
		os.Remove(p)
	}
}

// Name returns the container's name ("" for a container made before
// names, or half made).
func (c *Container) Name() string {
	b, err := os.ReadFile(filepath.Join(c.Dir, nameFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Rename gives the container ref names the name newName. It fails with a
// *NameError when newName is invalid or another container has it.
func (s *Store) Rename(ref, newName string) (*Container, error) {
	if !ValidName(newName) {
		return nil, &NameError{Name: newName}
	}
	unlock, err := s.lockNames()
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := s.Get(ref)
	if err != nil {
		return nil, err
	}
	old := c.Name()
	if old == newName {
		return c, nil
	}
	if err := s.claimName(newName, c.ID); err != nil {
		return nil, err
	}
	if err := writeAtomic(filepath.Join(c.Dir, nameFile), []byte(newName+"\n")); err != nil {
		s.dropName(newName, c.ID)
		return nil, err
	}
	if old != "" {
		s.dropName(old, c.ID)
	}
	return c, nil
}

// byName returns the container that has name, nil when none has.
func (s *Store) byName(name string) *Container {
	if !ValidName(name) {
		return nil
	}
	id := s.nameHolder(name)
	if id == "" {
		return nil
	}
	c := &Container{ID: id, Dir: filepath.Join(s.dir, id)}
	if _, err := os.Stat(filepath.Join(c.Dir, stateFile)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return c
}
