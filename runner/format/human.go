package format

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// decimalUnits are the units of Size: powers of 1000, as docker prints them.
var decimalUnits = []string{"B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"}

// Size renders n bytes as docker's tables do: three significant digits
// and a decimal unit ("0B", "512B", "12.3kB", "1.05MB", "80MB").
func Size(n int64) string { return SizePrecision(n, 3) }

// SizePrecision is Size with prec significant digits.
func SizePrecision(n int64, prec int) string {
	v, u := float64(n), 0
	for v >= 1000 && u < len(decimalUnits)-1 {
		v /= 1000
		u++
	}
	return fmt.Sprintf("%.*g%s", prec, v, decimalUnits[u])
}

// Duration renders d as docker's "CREATED" and "STATUS" columns do:
// "Less than a second", "1 second", "45 seconds", "About a minute",
// "12 minutes", "About an hour", "5 hours", "3 days", "2 weeks",
// "4 months", "2 years". Callers add " ago" where docker does.
func Duration(d time.Duration) string {
	secs := int(d.Seconds())
	mins := int(d.Minutes())
	hours := int(d.Hours() + 0.5) // rounded from here on
	switch {
	case secs < 1:
		return "Less than a second"
	case secs == 1:
		return "1 second"
	case secs < 60:
		return fmt.Sprintf("%d seconds", secs)
	case mins == 1:
		return "About a minute"
	case mins < 60:
		return fmt.Sprintf("%d minutes", mins)
	case hours == 1:
		return "About an hour"
	case hours < 48:
		return fmt.Sprintf("%d hours", hours)
	case hours < 24*7*2:
		return fmt.Sprintf("%d days", hours/24)
	case hours < 24*30*2:
		return fmt.Sprintf("%d weeks", hours/24/7)
	case hours < 24*365*2:
		return fmt.Sprintf("%d months", hours/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

// Ago is Duration(now-t) + " ago", or "N/A" for a zero t.
func Ago(now, t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return Duration(now.Sub(t)) + " ago"
}

// Ellipsis shortens s to at most width characters (runes), the last of
// them "…", as docker truncates its columns.
func Ellipsis(s string, width int) string {
	if width <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// ShortIDLength is the length of a truncated ID.
const ShortIDLength = 12

// TruncateID returns the first 12 characters of an ID, without its
// algorithm ("sha256:0123…" gives "0123456789ab"), as docker shows IDs.
func TruncateID(id string) string {
	if i := strings.IndexByte(id, ':'); i >= 0 {
		id = id[i+1:]
	}
	if len(id) > ShortIDLength {
		id = id[:ShortIDLength]
	}
	return id
}
