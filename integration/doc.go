// Package integration tests the built berth binary with real OCI clients, the
// OCI conformance suite and Debian's docker-registry (the shared harness in
// ../shared/harness); its non-test code starts and stops registry processes
// and a private buildkitd (buildkit.go, the reference berth build is compared
// with) for these tests and for bench/. It imports only the standard library
// (its tests also internal/versitygw, the local S3 server Berth on S3 runs
// against, and integration/imagediff, which compares two built images).
//
// The tests skip unless BERTH_INTEGRATION=1 (set by `make test`, which also
// installs the clients); with it, a missing prerequisite is a failure.
//
// Environment:
//
//	BERTH_INTEGRATION=1        run the tests; missing prerequisites fail them
//	BERTH_HARNESS=DIR          the harness scripts (default ../../shared/harness
//	                           from this directory, i.e. ../shared/harness from the checkout)
//	BERTH_BINARY=FILE          use this berth binary instead of building ./cmd/berth
//	BERTH_TEST_REGISTRY=NAME   registry under test: berth (default) or
//	                           docker-registry (to prove the harness itself)
//	VERSITYGW=FILE             the versitygw binary for the S3 and replica tests
//	                           (default: on PATH, else ~/.cache/berth-tools/versitygw,
//	                           where make prereqs installs it)
//	BUILDKITD=FILE, BUILDCTL=FILE
//	                           BuildKit v0.22.0 for the build oracle (default: on
//	                           PATH, else ~/.cache/berth-tools, where make buildkit
//	                           installs them)
//	BERTH_BUILD_ORACLE_KEEP=DIR
//	                           keep the build oracle's images (DIR/ENTRY/*.tar)
//	BERTH_TEST_IMAGES_CACHE=DIR
//	                           where the test images are cached (default
//	                           $OCI_HARNESS_CACHE/test-images, ~/.cache/oci-harness/test-images)
package integration
