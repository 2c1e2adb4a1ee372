// Package dockerfile is what a Dockerfile means, without running
// anything: Convert parses it with BuildKit's parser and instruction
// packages, expands its words with BuildKit's shell lexer, resolves ARG
// scoping and the stages the target needs, and returns a Plan: per stage,
// its base, the filesystem steps to run (RUN, COPY/ADD, WORKDIR) with
// their arguments expanded, and the image config (Env, Cmd, Entrypoint,
// Healthcheck, OnBuild, Shell, history, ...) docker build (BuildKit)
// writes for it. The executor in runner/build runs the steps.
//
// Like BuildKit's dockerfile2llb, the conversion is pure: the only thing
// it needs from outside is the config of each base image, asked of a
// Resolver, so it is table-tested with a map of configs.
//
// It may import the standard library, golang.org/x/sys/unix (signal
// names), go-digest, image-spec, Docker's
// config types and BuildKit's dockerfile parser, instructions and shell
// packages; never another berth package (depcheck_test.go). runner/commit
// uses its config helpers (ExposedPorts, CommandLine, SetEnv, Expander).
package dockerfile
