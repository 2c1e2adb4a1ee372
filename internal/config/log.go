package config

import (
	"log/slog"
	"slices"
)

// Log configures the process logger (log/slog, written to stderr).
type Log struct {
	// Level is the least severe level written: debug, info, warn or error.
	// Default: info.
	Level string `yaml:"level"`
	// Format is text (key=value pairs) or json (one object per line).
	// Default: text.
	Format string `yaml:"format"`
	// AccessLog writes one line per HTTP request, at level info.
	// Default: true.
	AccessLog bool `yaml:"accessLog"`
}

// Log levels and formats accepted in Log.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

func defaultLog() Log {
	return Log{Level: "info", Format: "text", AccessLog: true}
}

func (l *Log) validate(report reportFunc) {
	if !slices.Contains(logLevels, l.Level) {
		report("log.level", "%q is not one of %s", l.Level, oneOf(logLevels))
	}
	if !slices.Contains(logFormats, l.Format) {
		report("log.format", "%q is not one of %s", l.Format, oneOf(logFormats))
	}
}

// SlogLevel returns Level as a slog.Level. Level must be valid.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
