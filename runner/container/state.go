package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Container statuses.
const (
	StatusCreated = "created" // made, never started
	StatusRunning = "running" // a berth process holds it and its PID 1 runs
	StatusExited  = "exited"  // ran and ended (or its berth process died)
	// StatusRestarting: it ended and its supervisor waits to start it
	// again (its restart policy).
	StatusRestarting = "restarting"
)

// State is a container's state.json.
type State struct {
	ID string `json:"id"`
	// Name is the container's name. It is kept in the file "name" of the
	// container's directory and in the store's name index, not in
	// state.json, so that a rename while the container runs is not undone
	// by its holder's next save: State fills it in, SaveState ignores it.
	Name    string    `json:"-"`
	Image   string    `json:"image"`             // as the user named it
	ImageID string    `json:"imageID,omitempty"` // the config digest
	Command []string  `json:"command,omitempty"` // the process args
	Created time.Time `json:"created"`
	Status  string    `json:"status"`
	// Pid is the host pid of the container's PID 1 while it runs;
	// Holder the pid of the berth process running it (a foreground run
	// or a detached supervisor).
	Pid    int `json:"pid,omitempty"`
	Holder int `json:"holder,omitempty"`
	// Paused says the running container is frozen (Pause).
	Paused bool `json:"paused,omitempty"`
	// ExitCode and OOMKilled are those of the last run.
	ExitCode  int       `json:"exitCode"`
	OOMKilled bool      `json:"oomKilled,omitempty"`
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
	// AutoRemove removes the container when it exits (--rm).
	AutoRemove bool `json:"autoRemove,omitempty"`
	// Flattened says the rootfs is a copy of the layers (no overlayfs):
	// rootfs/ itself is the container's files, kept across runs.
	Flattened bool `json:"flattened,omitempty"`
	// Error is why the last start failed, if it did.
	Error string `json:"error,omitempty"`
	// RestartPolicy is kept by the container's supervisor;
	// RestartCount is how many times it started the container again.
	RestartPolicy RestartPolicy `json:"restartPolicy,omitzero"`
	RestartCount  int           `json:"restartCount,omitempty"`
	// Healthcheck is the container's health check (nil: none).
	Healthcheck *HealthConfig `json:"healthcheck,omitempty"`
	// Health is the result of its checks, kept in health.json by the
	// supervisor (State fills it in, SaveState ignores it); nil when the
	// container has no health check or it has not run one yet.
	Health *Health `json:"-"`
}

// Store keeps containers under <state>/containers and their names under
// <state>/names (layout in doc.go).
type Store struct{ dir, names string }

// Names in a container's directory.
const (
	configFile = "config.json"
	stateFile  = "state.json"
	lockName   = "lock"
	// stateLockName is flocked while state.json is written (lockState).
	stateLockName = "state.lock"
	logName       = "log"
)

// validID reports whether id is a container id: 12 to 64 lowercase hex
// digits.
func validID(id string) bool {
	if len(id) < 12 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// OpenStore opens (creating) the container store of the state directory.
// The state and containers directories are 0711: a user-namespaced
// container's root must reach its rootfs, but nobody may list the
// containers; each container's own directory is the gate (see Admit).
func OpenStore(stateDir string) (*Store, error) {
	dir := filepath.Join(stateDir, "containers")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("container store: %w", err)
	}
	names := filepath.Join(stateDir, "names")
	if err := os.MkdirAll(names, 0o700); err != nil {
		return nil, fmt.Errorf("container store: %w", err)
	}
	os.Chmod(stateDir, 0o711)
	os.Chmod(dir, 0o711)
	return &Store{dir: dir, names: names}, nil
}

// Container is one container's directory.
type Container struct {
	ID  string
	Dir string
}

// New makes a container directory (upper, work, rootfs) for st (st.ID
// NewID() when empty) and writes its state. st.Name is its name, a
// generated one (GenerateName) when empty; a name another container has
// fails with a *NameError wrapping ErrExists, one that breaks the grammar
// with a *NameError wrapping ErrInvalidName.
func (s *Store) New(st State) (*Container, error) {
	if st.ID == "" {
		st.ID = NewID()
	}
	if !validID(st.ID) {
		return nil, fmt.Errorf("%w: container id %q", ErrInvalidSpec, st.ID)
	}
	if st.Name != "" && !ValidName(st.Name) {
		return nil, &NameError{Name: st.Name}
	}
	unlock, err := s.lockNames()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if st.Name == "" {
		for i := 0; st.Name == ""; i++ {
			if n := GenerateName(i / 3); s.nameHolder(n) == "" {
				st.Name = n
			} else if i >= 100 {
				return nil, fmt.Errorf("%w: no free generated name after %d tries", ErrExists, i)
			}
		}
	} else if holder := s.nameHolder(st.Name); holder != "" {
		return nil, &NameError{Name: st.Name, Holder: holder}
	}
	c := &Container{ID: st.ID, Dir: filepath.Join(s.dir, st.ID)}
	// 0700: the rootfs holds the image's setuid files (see Admit).
	if err := os.Mkdir(c.Dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: %s", ErrExists, st.ID)
		}
		return nil, err
	}
	for _, d := range []string{c.Upper(), c.Work(), c.Rootfs()} {
		if err := os.Mkdir(d, 0o755); err != nil {
			os.RemoveAll(c.Dir)
			return nil, err
		}
	}
	if st.Created.IsZero() {
		st.Created = time.Now().UTC()
	}
	if st.Status == "" {
		st.Status = StatusCreated
	}
	if err := c.SaveState(st); err != nil {
		os.RemoveAll(c.Dir)
		return nil, err
	}
	if err := writeAtomic(filepath.Join(c.Dir, nameFile), []byte(st.Name+"\n")); err != nil {
		os.RemoveAll(c.Dir)
		return nil, err
	}
	if err := s.claimName(st.Name, c.ID); err != nil {
		os.RemoveAll(c.Dir)
		return nil, err
	}
	return c, nil
}

// Get finds a container as docker does: by its full ID, its name (a
// leading "/" allowed, as docker prints names), or a unique ID prefix.
func (s *Store) Get(ref string) (*Container, error) {
	if validID(ref) {
		if _, err := os.Stat(filepath.Join(s.dir, ref, stateFile)); err == nil {
			return &Container{ID: ref, Dir: filepath.Join(s.dir, ref)}, nil
		}
	}
	if c := s.byName(strings.TrimPrefix(ref, "/")); c != nil {
		return c, nil
	}
	if ref == "" || strings.ContainsAny(ref, "/.") {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, ref)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, e := range ents {
		if e.Name() == ref {
			found = []string{ref}
			break
		}
		if strings.HasPrefix(e.Name(), ref) {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	case 1:
		return &Container{ID: found[0], Dir: filepath.Join(s.dir, found[0])}, nil
	}
	return nil, fmt.Errorf("%w: %q matches %d containers", ErrNotFound, ref, len(found))
}

// List returns all containers, oldest first.
func (s *Store) List() ([]*Container, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []*Container
	created := map[string]time.Time{}
	for _, e := range ents {
		if !e.IsDir() || !validID(e.Name()) {
			continue
		}
		c := &Container{ID: e.Name(), Dir: filepath.Join(s.dir, e.Name())}
		st, err := c.State()
		if err != nil {
			continue // half made or half removed
		}
		created[c.ID] = st.Created
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return created[out[i].ID].Before(created[out[j].ID]) })
	return out, nil
}

// Admit sets who may enter the container's directory for spec: root
// only (0700), and, when spec has a user namespace, the host group that
// the container's gid 0 maps to (0710), so that the container's root can
// reach its rootfs while host users still cannot reach its setuid files.
func (c *Container) Admit(s *specs.Spec) error {
	gid, mode := 0, os.FileMode(0o700)
	if s.Linux != nil {
		for _, ns := range s.Linux.Namespaces {
			if ns.Type != specs.UserNamespace {
				continue
			}
			for _, m := range s.Linux.GIDMappings {
				if m.ContainerID == 0 && m.Size > 0 {
					gid, mode = int(m.HostID), 0o710
				}
			}
		}
	}
	if err := os.Chown(c.Dir, 0, gid); err != nil {
		return err
	}
	return os.Chmod(c.Dir, mode)
}

// Upper is the container's writable layer.
func (c *Container) Upper() string { return filepath.Join(c.Dir, "upper") }

// Work is overlayfs's work directory.
func (c *Container) Work() string { return filepath.Join(c.Dir, "work") }

// Rootfs is where the rootfs is mounted (or flattened).
func (c *Container) Rootfs() string { return filepath.Join(c.Dir, "rootfs") }

// LogPath is the log of a detached container.
func (c *Container) LogPath() string { return filepath.Join(c.Dir, logName) }

// Spec reads config.json.
func (c *Container) Spec() (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, configFile))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidSpec, configFile, err)
	}
	return &s, nil
}

// SaveSpec writes config.json.
func (c *Container) SaveSpec(s *specs.Spec) error {
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(c.Dir, configFile), b)
}

// State reads state.json. A container recorded as running whose holder
// is gone (no lock held) is reported exited.
func (c *Container) State() (State, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, stateFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return State{}, fmt.Errorf("%w: %s", ErrNotFound, c.ID)
		}
		return State{}, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("%s: %w", stateFile, err)
	}
	st.Name = c.Name()
	if st.Healthcheck != nil {
		st.Health = c.health()
	}
	if (st.Status == StatusRunning || st.Status == StatusRestarting) && !c.Held() {
		st.Status = StatusExited
		st.Pid = 0
	}
	if st.Paused && !pausedNow(st) {
		st.Paused = false // thawed or ended since
	}
	return st, nil
}

// SaveState writes state.json atomically.
func (c *Container) SaveState(st State) error {
	unlock, err := c.lockState()
	if err != nil {
		return err
	}
	defer unlock()
	return c.saveState(st)
}

// saveState is SaveState for a caller holding lockState.
func (c *Container) saveState(st State) error {
	b, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(c.Dir, stateFile), b)
}

// updateState reads the state, lets change modify it and writes it back,
// with the state's lock held throughout, so that no other write of
// state.json (the holder recording an exit, another command) comes
// between the read and the write. An error from change writes nothing.
func (c *Container) updateState(change func(*State) error) error {
	unlock, err := c.lockState()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := c.State()
	if err != nil {
		return err
	}
	if err := change(&st); err != nil {
		return err
	}
	return c.saveState(st)
}

// lockState takes the exclusive flock of state.lock, which every write of
// state.json holds (a process's lock: it goes when the process ends).
func (c *Container) lockState() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(c.Dir, stateLockName), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		if err = unix.Flock(int(f.Fd()), unix.LOCK_EX); err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", stateLockName, err)
	}
	return func() { f.Close() }, nil
}

// writeAtomic writes b to a temporary file of its own beside name and
// renames it to name, so that concurrent writers never mix their bytes.
func writeAtomic(name string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Hold takes the container's lock, which its berth process keeps for as
// long as the container runs; it fails with ErrRunning when another
// process holds it. The lock goes with the process, however it ends.
func (c *Container) Hold() (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(c.Dir, lockName), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrRunning, c.ID)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Held reports whether a berth process holds the container (runs it).
func (c *Container) Held() bool {
	release, err := c.Hold()
	if err != nil {
		return errors.Is(err, ErrRunning)
	}
	release()
	return false
}

// WaitReleased blocks until no process holds the container or timeout
// passed (a negative timeout waits forever); it reports whether the
// container was released.
func (c *Container) WaitReleased(timeout time.Duration) bool {
	f, err := os.OpenFile(filepath.Join(c.Dir, lockName), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return !c.Held()
	}
	defer f.Close()
	deadline := time.Now().Add(timeout)
	for {
		if unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) == nil {
			return true
		}
		if timeout >= 0 && time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Unmount unmounts the rootfs if it is mounted.
func (c *Container) Unmount() error {
	err := unix.Unmount(c.Rootfs(), unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmounting %s: %w", c.Rootfs(), err)
}

// Remove deletes the container: its writable layer, config, state and
// log. It fails with ErrRunning while a process holds it.
func (c *Container) Remove() error {
	release, err := c.Hold()
	if err != nil {
		return err
	}
	defer release()
	return c.RemoveHeld()
}

// RemoveHeld is Remove for the process that holds the container (Hold),
// such as the one that ran it with AutoRemove. Its name is free again
// once its directory is gone from the store (see names.go).
func (c *Container) RemoveHeld() error {
	if err := c.Unmount(); err != nil {
		return err
	}
	// Never follow a mount: refuse if the rootfs is still one.
	var st, parent unix.Stat_t
	if unix.Lstat(c.Rootfs(), &st) == nil && unix.Lstat(c.Dir, &parent) == nil && st.Dev != parent.Dev {
		return fmt.Errorf("container %s: %s is still a mount point", c.ID, c.Rootfs())
	}
	c.removeCgroup()
	// Rename first, so that a half-removed container is never listed.
	name := c.Name()
	trash := filepath.Join(filepath.Dir(c.Dir), "."+c.ID+".removing")
	if err := os.Rename(c.Dir, trash); err != nil {
		return err
	}
	if name != "" {
		s := &Store{dir: filepath.Dir(c.Dir), names: filepath.Join(filepath.Dir(filepath.Dir(c.Dir)), "names")}
		if unlock, err := s.lockNames(); err == nil {
			s.dropName(name, c.ID)
			unlock()
		}
	}
	return os.RemoveAll(trash)
}

// removeCgroup removes the cgroup a holder that died left behind (its
// processes died with the init: the parent-death signal); a holder that
// ended normally removed it already. Best effort: a group that cannot go
// (processes in it still) stays.
func (c *Container) removeCgroup() {
	p := "berth/" + c.ID
	if s, err := c.Spec(); err == nil && s.Linux != nil && s.Linux.CgroupsPath != "" {
		p = s.Linux.CgroupsPath
	}
	// NewCgroup finds (and would make) the group's directories in every
	// hierarchy; Destroy removes them.
	if cg, err := NewCgroup(p, nil); err == nil {
		cg.Destroy()
	}
}
