package config

import (
	"net/url"
	"slices"
	"strings"
	"time"
)

// Storage backends accepted in Storage.Driver.
const (
	// DriverFilesystem stores content under Storage.Filesystem.Root.
	DriverFilesystem = "filesystem"
	// DriverInmemory keeps content in memory, lost at exit: for tests and demos.
	DriverInmemory = "inmemory"
	// DriverS3 stores content in an S3 bucket (AWS or S3-compatible), under
	// Storage.S3.Prefix. Several replicas can share one bucket and prefix.
	DriverS3 = "s3"
)

var storageDrivers = []string{DriverFilesystem, DriverInmemory, DriverS3}

// maxPresignExpiry is the longest validity S3 accepts for a presigned URL
// (SigV4: 7 days).
const maxPresignExpiry = 7 * 24 * time.Hour

// Storage chooses and configures the storage backend. Each backend has its
// own subsection, read (and validated) only when Driver names it.
type Storage struct {
	// Driver is the backend: filesystem, inmemory or s3. Default: filesystem.
	Driver string `yaml:"driver"`
	// Filesystem configures the filesystem driver.
	Filesystem Filesystem `yaml:"filesystem"`
	// S3 configures the s3 driver.
	S3 S3 `yaml:"s3"`
	// Delete configures the DELETE endpoints of the API.
	Delete Delete `yaml:"delete"`
	// Manifests configures what a manifest push must satisfy.
	Manifests Manifests `yaml:"manifests"`
	// UploadPurging configures the removal of abandoned uploads.
	UploadPurging UploadPurging `yaml:"uploadPurging"`
	// MaxConcurrentUploads caps the blob upload bodies streamed at once
	// (PATCH, PUT and monolithic POST of an upload); beyond it such a
	// request is answered 429 TOOMANYREQUESTS with Retry-After before its
	// body is read, and the client retries. 0 is no cap. Must not be
	// negative. Default: 0.
	MaxConcurrentUploads int `yaml:"maxConcurrentUploads"`
}

// Filesystem configures the filesystem storage driver.
type Filesystem struct {
	// Root is the directory holding all registry content; it is created if
	// missing. Relative paths are relative to the working directory.
	// Default: ./data.
	Root string `yaml:"root"`
	// WarnFreeBytes: the server logs a warning when the filesystem's free
	// space falls under this many bytes (checked every minute; the
	// metric berth_storage_free_bytes has it at every scrape). 0 warns
	// never. Must not be negative. Default: 1073741824 (1 GiB).
	WarnFreeBytes int64 `yaml:"warnFreeBytes"`
}

// S3 configures the S3 storage driver. Content is stored under the keys
// Prefix + "/docker/registry/v2/...", the layout of CNCF Distribution's s3
// driver with its rootdirectory set to Prefix. Everything a replica needs,
// upload state included, lives in the bucket: replicas that share Bucket
// and Prefix serve the same registry.
type S3 struct {
	// Bucket is the bucket's name. Required when Driver is s3.
	// Default: "".
	Bucket string `yaml:"bucket"`
	// Region is the bucket's region, used to sign requests. Empty means
	// AWS_REGION or the shared AWS config's region, else us-east-1 (what
	// most S3-compatible stores accept). Default: "".
	Region string `yaml:"region"`
	// Endpoint is the base URL of an S3-compatible service
	// (https://minio.example:9000); empty means AWS S3. Default: "".
	Endpoint string `yaml:"endpoint"`
	// PathStyle addresses the bucket as ENDPOINT/BUCKET/KEY instead of
	// BUCKET.ENDPOINT/KEY; most S3-compatible services want it.
	// Default: false.
	PathStyle bool `yaml:"pathStyle"`
	// AccessKey and SecretKey are static credentials. Set both, or neither
	// to use the AWS default chain (environment, shared files, IAM role of
	// the instance, pod or task). Default: "".
	AccessKey string `yaml:"accessKey"`
	// SecretKey goes with AccessKey. It is never logged, and
	// `berth config show` masks it. Default: "".
	SecretKey string `yaml:"secretKey" secret:"true"`
	// Prefix is the key prefix under which the registry lives in the
	// bucket, Distribution's rootdirectory: "registry" stores keys
	// registry/docker/registry/v2/... Empty uses the bucket's root.
	// Default: "".
	Prefix string `yaml:"prefix"`
	// Redirect answers blob GETs with 307 to a presigned URL of the object,
	// so that clients download from the bucket rather than through Berth.
	// Clients must be able to reach the bucket's endpoint. Default: true.
	Redirect bool `yaml:"redirect"`
	// PresignExpiry is how long a redirect URL stays valid: positive, at
	// most 168h (7 days, S3's limit). Default: 20m.
	PresignExpiry time.Duration `yaml:"presignExpiry"`
}

// Delete configures the DELETE endpoints of the API.
type Delete struct {
	// Enabled allows deleting manifests, blobs and tags. When false those
	// requests are answered 405 with the OCI code UNSUPPORTED.
	// Default: true.
	Enabled bool `yaml:"enabled"`
}

// Manifests configures what a manifest push must satisfy.
type Manifests struct {
	// Sparse accepts a manifest whose layers, config or child manifests are
	// not in the repository: an index mirrored for some of its platforms,
	// an image whose non-distributable layers live elsewhere. Pulling what
	// is absent answers "unknown"; garbage collection keeps it once pushed.
	// A reference a collection deleted during the push or in the day
	// before is always refused. False refuses every absent reference with the OCI
	// code MANIFEST_BLOB_UNKNOWN. Default: true.
	Sparse bool `yaml:"sparse"`
}

// minUploadPurgingAge is the shortest UploadPurging.Age accepted: an
// upload's age counts from its start, so a slow push must never reach it.
const minUploadPurgingAge = time.Hour

// UploadPurging configures the removal of abandoned uploads: pushes that a
// client began and never finished or cancelled, whose bytes would
// otherwise stay in storage for ever.
type UploadPurging struct {
	// Enabled runs the purge in the background of `berth serve`, first a
	// minute after the start, then every Interval. Several replicas may
	// run it at once. Default: true.
	Enabled bool `yaml:"enabled"`
	// Age is how long after its start an unfinished upload is removed:
	// at least 1h. Default: 168h (7 days).
	Age time.Duration `yaml:"age"`
	// Interval is the time between two purges: positive. Default: 24h.
	Interval time.Duration `yaml:"interval"`
}

func defaultStorage() Storage {
	return Storage{
		Driver:     DriverFilesystem,
		Filesystem: Filesystem{Root: "./data", WarnFreeBytes: 1 << 30},
		S3:         S3{Redirect: true, PresignExpiry: 20 * time.Minute},
		Delete:     Delete{Enabled: true},
		Manifests:  Manifests{Sparse: true},
		UploadPurging: UploadPurging{
			Enabled:  true,
			Age:      7 * 24 * time.Hour,
			Interval: 24 * time.Hour,
		},
	}
}

func (s *Storage) validate(report reportFunc) {
	if !slices.Contains(storageDrivers, s.Driver) {
		report("storage.driver", "%q is not one of %s", s.Driver, oneOf(storageDrivers))
	}
	if s.Driver == DriverFilesystem && s.Filesystem.Root == "" {
		report("storage.filesystem.root", "must be set when storage.driver is %s", DriverFilesystem)
	}
	if s.Filesystem.WarnFreeBytes < 0 {
		report("storage.filesystem.warnFreeBytes", "%d must not be negative (0 warns never)", s.Filesystem.WarnFreeBytes)
	}
	if s.MaxConcurrentUploads < 0 {
		report("storage.maxConcurrentUploads", "%d must not be negative (0 is no cap)", s.MaxConcurrentUploads)
	}
	if s.Driver == DriverS3 {
		s.S3.validate(report)
	}
	if s.UploadPurging.Enabled {
		s.UploadPurging.validate(report)
	}
}

func (u *UploadPurging) validate(report reportFunc) {
	if u.Age < minUploadPurgingAge {
		report("storage.uploadPurging.age", "%s must be at least %s, so that a slow push is never purged", u.Age, minUploadPurgingAge)
	}
	if u.Interval <= 0 {
		report("storage.uploadPurging.interval", "%s must be positive", u.Interval)
	}
}

// validate checks the s3 section. Messages never quote the secret key.
func (s *S3) validate(report reportFunc) {
	if s.Bucket == "" {
		report("storage.s3.bucket", "must be set when storage.driver is %s", DriverS3)
	}
	if s.Endpoint != "" {
		u, err := url.Parse(s.Endpoint)
		switch {
		case strings.Contains(s.Endpoint, "@") || (err == nil && u.User != nil):
			// Not quoted: what precedes the @ may be a password.
			report("storage.s3.endpoint", "must not hold credentials (use accessKey and secretKey)")
		case err != nil:
			report("storage.s3.endpoint", "%q is not a URL", s.Endpoint)
		case u.Scheme != "http" && u.Scheme != "https":
			report("storage.s3.endpoint", "%q: want an http:// or https:// URL", s.Endpoint)
		case u.Host == "":
			report("storage.s3.endpoint", "%q has no host", s.Endpoint)
		case u.RawQuery != "" || u.Fragment != "":
			report("storage.s3.endpoint", "%q: want a base URL without query or fragment", s.Endpoint)
		}
	}
	if (s.AccessKey == "") != (s.SecretKey == "") {
		report("storage.s3", "set both accessKey and secretKey, or neither (to use the AWS default credential chain)")
	}
	if p := strings.Trim(s.Prefix, "/"); p != "" {
		for part := range strings.SplitSeq(p, "/") {
			if part == "" || part == "." || part == ".." {
				report("storage.s3.prefix", "%q: want slash-separated names, without empty, . or .. parts", s.Prefix)
				break
			}
		}
	}
	if s.PresignExpiry <= 0 || s.PresignExpiry > maxPresignExpiry {
		report("storage.s3.presignExpiry", "%s must be positive and at most 168h (S3's limit for presigned URLs)", s.PresignExpiry)
	}
}
