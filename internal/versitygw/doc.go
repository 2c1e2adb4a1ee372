// Package versitygw runs versitygw, a local S3-compatible server over a
// temporary directory, for tests of the S3 storage driver and of Berth on S3.
// It may import only the standard library (testing included).
package versitygw
