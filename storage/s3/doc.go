// Package s3 holds the storage.Driver that keeps content in an S3 bucket (AWS or an S3-compatible server),
// so that Berth replicas can share one bucket. It is the only package that may import the AWS SDK; besides
// that it may import only the standard library and package storage.
package s3
