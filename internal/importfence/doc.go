// Package importfence holds the checker behind every dependency fence
// (depcheck_test.go): Check lists what a package depends on with go list -deps
// and fails the test on each dependency its Rule forbids. Only tests import it.
// It may import only the standard library (testing included).
package importfence
