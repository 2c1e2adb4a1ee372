// Package format renders what berth's runner commands print the way docker
// prints it: human sizes ("1.05MB") and durations ("2 weeks"), truncated IDs
// and commands, and --format Go templates with docker's template functions
// (json, join, split, upper, lower, title, pad, truncate, println) and its
// "table" prefix, which prints a header and aligns the columns.
//
// It may import the standard library only (depcheck_test.go): it knows
// nothing of images or containers; the row and document types it renders
// live with the code that fills them (runner/view).
package format
