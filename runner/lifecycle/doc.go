// Package lifecycle takes a container through its life on the local
// stores: Create makes it from an image (its writable layer, its
// config.json and state.json), RunHeld runs it to its end while holding it
// (mounting its rootfs, recording running and exited), Detach starts it
// under a supervisor process (a hidden berth command that calls Supervise,
// which also keeps its restart policy, restart.go, and runs its health
// check, health.go), Stop ends it with its stop signal, then SIGKILL, and
// WithRoot opens its files (running or not) for berth cp. A container's
// network (runner/network: its settings saved by Create) is attached for
// each run, its eth0 made between the init's start and its exec, and
// detached when the run ends.
//
// cmd/berth parses flags into a spec.Options and calls these; what the
// image is and how it was pulled is the caller's (Create takes a resolved
// image.Image).
//
// It may import the standard library, the runtime-spec types,
// golang.org/x/sys and runner/container, runner/containerfs,
// runner/image, runner/layers, runner/network and runner/spec; never the
// registry server or the storage drivers
// (depcheck_test.go).
package lifecycle
