package config

import "slices"

// Storage backends accepted in Storage.Driver.
const (
	// DriverFilesystem stores content under Storage.Filesystem.Root.
	DriverFilesystem = "filesystem"
	// DriverInmemory keeps content in memory, lost at exit: for tests and demos.
	DriverInmemory = "inmemory"
)

var storageDrivers = []string{DriverFilesystem, DriverInmemory}

// Storage chooses and configures the storage backend. Each backend has its
// own subsection, read only when Driver names it.
type Storage struct {
	// Driver is the backend: filesystem or inmemory. Default: filesystem.
	Driver string `yaml:"driver"`
	// Filesystem configures the filesystem driver.
	Filesystem Filesystem `yaml:"filesystem"`
	// Delete configures the DELETE endpoints of the API.
	Delete Delete `yaml:"delete"`
}

// Filesystem configures the filesystem storage driver.
type Filesystem struct {
	// Root is the directory holding all registry content; it is created if
	// missing. Relative paths are relative to the working directory.
	// Default: ./data.
	Root string `yaml:"root"`
}

// Delete configures the DELETE endpoints of the API.
type Delete struct {
	// Enabled allows deleting manifests, blobs and tags. When false those
	// requests are answered 405 with the OCI code UNSUPPORTED.
	// Default: true.
	Enabled bool `yaml:"enabled"`
}

func defaultStorage() Storage {
	return Storage{
		Driver:     DriverFilesystem,
		Filesystem: Filesystem{Root: "./data"},
		Delete:     Delete{Enabled: true},
	}
}

func (s *Storage) validate(report reportFunc) {
	if !slices.Contains(storageDrivers, s.Driver) {
		report("storage.driver", "%q is not one of %s", s.Driver, oneOf(storageDrivers))
	}
	if s.Driver == DriverFilesystem && s.Filesystem.Root == "" {
		report("storage.filesystem.root", "must be set when storage.driver is %s", DriverFilesystem)
	}
}
