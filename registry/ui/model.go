package ui

import (
	"context"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
)

// Source is what the pages show, read from the registry's storage. Every
// method is one request's worth of data: a page makes one call.
type Source interface {
	// Repositories lists every repository with its summary, by name.
	Repositories(ctx context.Context) ([]Repository, error)
	// Repository returns one repository and its tags; ErrNotFound if it
	// has none.
	Repository(ctx context.Context, name string) (RepositoryPage, error)
	// Image describes manifest d of repository name; ErrNotFound if the
	// repository has no such manifest.
	Image(ctx context.Context, name string, d digest.Digest) (Image, error)
	// DeleteTag removes tag from repository name.
	DeleteTag(ctx context.Context, name, tag string) error
	// DeleteManifest removes manifest d from repository name with every
	// tag on it, and returns those tags.
	DeleteManifest(ctx context.Context, name string, d digest.Digest) ([]string, error)
}

// ErrNotFound: no such repository, tag or manifest (the pages answer 404).
var ErrNotFound = errors.New("not found")

// Repository summarises one repository for the repositories page.
type Repository struct {
	Name string `json:"name"`
	// Tags counts its tags.
	Tags int `json:"tags"`
	// Bytes is the compressed size of its tagged images, each blob
	// counted once (manifests, configs and layers; an index's children
	// included).
	Bytes int64 `json:"bytes"`
	// LastPush is when a tag was last pushed; zero without tags.
	LastPush time.Time `json:"lastPush"`
	// Upstream names the upstream a cached repository is filled from;
	// "" for a local one.
	Upstream string `json:"upstream,omitempty"`
}

// RepositoryPage is the repository page's data.
type RepositoryPage struct {
	Repository
	// Tags, by name.
	TagList []Tag `json:"tagList"`
}

// Tag is one tag of a repository and what it points at.
type Tag struct {
	Name      string        `json:"name"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	// Platforms of an index ("linux/amd64", "linux/arm64/v8"); of an
	// image, its own (from its config) when known.
	Platforms []string `json:"platforms,omitempty"`
	// Bytes is the compressed size of the image (of all of an index's
	// children), each blob once.
	Bytes int64 `json:"bytes"`
	// Created is the config's created time (of an index: the newest of
	// its children's); zero when unknown.
	Created time.Time `json:"created"`
	// Pushed is when the tag was last pushed.
	Pushed time.Time `json:"pushed"`
	// Referrers counts the referrers of the manifest by artifact type.
	Referrers map[string]int `json:"referrers,omitempty"`
}

// Image is the image page's data: one manifest (an image or an index).
type Image struct {
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"mediaType"`
	// Tags of the repository that point at it.
	Tags []string `json:"tags,omitempty"`
	// Bytes as in Tag.
	Bytes int64 `json:"bytes"`
	// Platform and Created from an image's config.
	Platform string    `json:"platform,omitempty"`
	Created  time.Time `json:"created"`
	// Config holds what the image runs (nil for an index or an artifact).
	Config *ImageConfig `json:"config,omitempty"`
	// History is the config's history, oldest first, each entry with the
	// layer it made (none for an empty layer).
	History []HistoryEntry `json:"history,omitempty"`
	// Layers of an image, in order.
	Layers []Descriptor `json:"layers,omitempty"`
	// Children of an index.
	Children []Child `json:"children,omitempty"`
	// Referrers are the manifests whose subject this is, each with its
	// own referrers (a signature of an SBOM), as a tree.
	Referrers []Referrer `json:"referrers,omitempty"`
	// ArtifactType of an artifact manifest; "" for an image or index.
	ArtifactType string `json:"artifactType,omitempty"`
}

// ImageConfig is what an image runs, from its config.
type ImageConfig struct {
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	Env          []string          `json:"env,omitempty"`
	User         string            `json:"user,omitempty"`
	WorkingDir   string            `json:"workingDir,omitempty"`
	ExposedPorts []string          `json:"exposedPorts,omitempty"`
	Volumes      []string          `json:"volumes,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// HistoryEntry is one step of an image's history.
type HistoryEntry struct {
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"createdBy"`
	Comment    string    `json:"comment,omitempty"`
	EmptyLayer bool      `json:"emptyLayer,omitempty"`
	// Layer is the layer the step made; nil for an empty layer.
	Layer *Descriptor `json:"layer,omitempty"`
}

// Descriptor names a blob.
type Descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
}

// Child is an entry of an index.
type Child struct {
	Descriptor
	Platform string `json:"platform,omitempty"`
}

// Referrer is a manifest whose subject is another, with its own referrers.
type Referrer struct {
	Descriptor
	ArtifactType string     `json:"artifactType,omitempty"`
	Referrers    []Referrer `json:"referrers,omitempty"`
}
