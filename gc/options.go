package gc

import (
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"
)

// Defaults of Options.
const (
	// DefaultGrace is the default Options.Grace.
	DefaultGrace = time.Hour
	// DefaultUploadMaxAge is the default Options.UploadMaxAge.
	DefaultUploadMaxAge = 24 * time.Hour
)

// Options tune Run. The zero value collects with the defaults: grace 1h,
// untagged manifests kept, no retention rules, uploads idle for 24h purged.
type Options struct {
	// Grace: nothing written or leased (relied on by a client) less than
	// Grace before the run started is deleted. Zero means DefaultGrace;
	// NoGrace (negative) means none.
	Grace time.Duration
	// UploadMaxAge: uploads with no activity for this long are purged.
	// Zero means DefaultUploadMaxAge; it is never shorter than Grace.
	UploadMaxAge time.Duration
	// DeleteUntagged makes only tags roots: an untagged manifest is deleted
	// unless a kept index lists it or it is a referrer of a kept subject.
	DeleteUntagged bool
	// Retention removes tags before marking; the first rule whose
	// Repositories glob matches a repository applies to it.
	Retention []RetentionRule
	// Caches are the pull-through cache's prefixes and their lifetimes:
	// in a cached repository a manifest not pulled for its rule's
	// ExpireAfter goes, with its tags (see ApplyCacheExpiry), whatever
	// DeleteUntagged says; blobs that other manifests need stay.
	Caches []CacheRule
	// RecordAs names who ran the collection in the record it leaves for
	// the web UI (LastRun): "berth gc", "berth serve"; "" records nothing.
	// A dry run records nothing (it changes nothing).
	RecordAs string
	// DryRun plans without deleting anything. A real run on the same data
	// deletes exactly what its dry run planned (less what clients relied
	// on meanwhile: see Report.Spared).
	DryRun bool
	// Explain fills Report.Kept with the reason each item stays.
	Explain bool
	// Reserve is the size of the collector's reserve (store.Reserve),
	// made again after a run that deleted something: the space the next
	// run uses to start on a full storage. Zero means store.DefaultReserve;
	// negative keeps none.
	Reserve int64
	// Logger receives progress at info level and each item at debug level.
	// Nil means slog.Default().
	Logger *slog.Logger

	// hooks lets tests stop a run at its steps to race clients against it.
	hooks hooks
}

// hooks are called, when set, at those points of a run.
type hooks struct {
	now         func() time.Time
	afterStart  func()
	beforeSweep func()
	// afterDoom runs once a round's items are marked doomed, before the
	// leases are read; beforeDelete after the leases are read.
	afterDoom, beforeDelete func()
	// batch replaces batchSize when positive.
	batch int
}

// RetentionRule says which tags of the matching repositories may go. A tag
// is deleted when it matches no KeepTags pattern, is not among the KeepLast
// most recently pushed tags, and was pushed more than OlderThan ago. A rule
// with neither KeepLast nor OlderThan set deletes nothing.
type RetentionRule struct {
	// Repositories is a glob over repository names: path.Match syntax per
	// name component ("team/*" matches "team/app", not "team/app/x"), and
	// "**" as a whole component matches any number of components
	// ("team/**" matches "team/app/x"; "**" matches every repository).
	Repositories string `json:"repositories"`
	// KeepLast keeps the N most recently pushed tags. Zero keeps none for
	// this reason.
	KeepLast int `json:"keepLast,omitempty"`
	// KeepTags are regular expressions (Go syntax, matched against the
	// whole tag); a matching tag is kept.
	KeepTags []string `json:"keepTags,omitempty"`
	// OlderThan: only tags pushed more than this long ago may go. Zero
	// means any age.
	OlderThan time.Duration `json:"olderThan,omitempty"`
}

// Report is what a run found, planned and did. It is printed as JSON by
// "berth gc --json"; field names are part of that interface.
type Report struct {
	DryRun bool `json:"dryRun"`
	// Start is when the run started, by the storage's clock; Cutoff is
	// Start - Grace.
	Start    time.Time     `json:"start"`
	Cutoff   time.Time     `json:"cutoff"`
	Duration time.Duration `json:"duration"`

	// The plan: what goes, and why (the Reason fields).
	Tags       []TagItem      `json:"tags"`       // removed by retention
	Manifests  []ManifestItem `json:"manifests"`  // untagged revisions no kept index or subject needs
	Blobs      []BlobItem     `json:"blobs"`      // bytes no kept manifest references
	LayerLinks []LinkItem     `json:"layerLinks"` // per-repository links no kept manifest of the repository needs
	Uploads    []UploadItem   `json:"uploads"`    // idle longer than UploadMaxAge
	// ReclaimableBytes is the size of Blobs, each blob counted once.
	ReclaimableBytes int64 `json:"reclaimableBytes"`

	// Kept explains each item that stays (Options.Explain only).
	Kept []KeptItem `json:"kept,omitempty"`

	// Deleted counts what a real run removed (a dry run: the plan), and
	// Spared what it planned but left because a client relied on it while
	// the run went on.
	Deleted Counts `json:"deleted"`
	Spared  Counts `json:"spared"`

	// ReferrersIndexed counts the referrers-index entries the run wrote
	// for manifests whose subject the index did not list them under
	// (content written by another registry); dry runs write them too.
	ReferrersIndexed int `json:"referrersIndexed"`
	// SummariesWritten counts the repository summaries (store.Summary)
	// the run wrote where none was stored; dry runs write them too.
	SummariesWritten int `json:"summariesWritten"`
}

// Counts counts items by kind.
type Counts struct {
	Tags       int   `json:"tags"`
	Manifests  int   `json:"manifests"`
	Blobs      int   `json:"blobs"`
	Bytes      int64 `json:"bytes"`
	LayerLinks int   `json:"layerLinks"`
	Uploads    int   `json:"uploads"`
}

// TagItem is a tag retention removes.
type TagItem struct {
	Repository string        `json:"repository"`
	Tag        string        `json:"tag"`
	Digest     digest.Digest `json:"digest"`
	Pushed     time.Time     `json:"pushed"`
	Rule       string        `json:"rule"` // the matching rule's Repositories glob
}

// ManifestItem is a manifest revision of a repository.
type ManifestItem struct {
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
}

// BlobItem is a stored blob (or manifest body) in the shared blob store.
type BlobItem struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// LinkItem is the link of a blob into a repository.
type LinkItem struct {
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
}

// UploadItem is an upload session.
type UploadItem struct {
	Repository   string    `json:"repository"`
	ID           string    `json:"id"`
	LastActivity time.Time `json:"lastActivity"`
}

// KeptItem says why an item stays.
type KeptItem struct {
	Kind       string        `json:"kind"` // "manifest", "blob" or "layerLink"
	Repository string        `json:"repository,omitempty"`
	Digest     digest.Digest `json:"digest"`
	// Reason is one of: "tagged <tag>", "child of <digest>", "referrer of
	// <digest>", "untagged manifests are kept", "pulled from the cache
	// lately", "referenced by <repo>@<digest>", "newer than the cutoff",
	// "leased" (a client relied on it during the run).
	Reason string `json:"reason"`
}
