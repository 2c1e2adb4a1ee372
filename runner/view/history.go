package view

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/runner/format"
	"github.com/berth-registry/berth/runner/image"
)

// HistoryFormat is `berth history`'s default --format, docker's.
const HistoryFormat = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"

// HistoryHeaders are the column headers of HistoryRow's fields.
var HistoryHeaders = map[string]string{
	"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
	"CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT",
}

// createdByWidth is where CREATED BY is cut unless NoTrunc.
const createdByWidth = 45

// HistoryRow is one line of `berth history`, its fields as printed.
type HistoryRow struct {
	// ID is the image's ID on the newest line, "<missing>" on the others
	// (as docker shows images it did not build locally).
	ID string
	// CreatedSince is "2 weeks ago", or RFC 3339 without Human.
	CreatedSince string
	// CreatedAt is RFC 3339.
	CreatedAt string
	// CreatedBy is the history entry's created_by, tabs as spaces, cut at
	// 45 characters unless NoTrunc.
	CreatedBy string
	// Size is the layer's uncompressed size ("0B" for an empty_layer
	// entry), human ("1.05MB") or in bytes.
	Size string
	// Comment is the entry's comment.
	Comment string
	// EmptyLayer marks an entry that made no layer (ENV, CMD, ...).
	EmptyLayer bool
}

// HistoryOptions are History's options.
type HistoryOptions struct {
	// Now is the time CreatedSince counts from.
	Now time.Time
	// Human prints sizes and ages for people (-H, docker's default).
	Human bool
	// NoTrunc keeps IDs and CREATED BY whole.
	NoTrunc bool
}

// History returns the rows of `berth history` for img, newest first: one
// per entry of the config's history, the entries that are not
// empty_layer matched in order to the image's layers, whose uncompressed
// sizes are layerSizes (base first). Layers the history does not describe
// get a row of their own (no CREATED BY); a history with more non-empty
// entries than the image has layers is refused.
func History(img image.Image, layerSizes []int64, o HistoryOptions) ([]HistoryRow, error) {
	if len(layerSizes) != len(img.Config.RootFS.DiffIDs) {
		return nil, fmt.Errorf("image %s: %d layer sizes for %d layers", img.ID, len(layerSizes), len(img.Config.RootFS.DiffIDs))
	}
	var rows []HistoryRow
	layer := 0
	for _, h := range img.Config.History {
		var size int64
		if !h.EmptyLayer {
			if layer >= len(layerSizes) {
				return nil, fmt.Errorf("%w: image %s: its history describes more layers than its %d", image.ErrCorrupt, img.ID, len(layerSizes))
			}
			size = layerSizes[layer]
			layer++
		}
		var created time.Time
		if h.Created != nil {
			created = *h.Created
		}
		rows = append(rows, historyRow(created, h.CreatedBy, h.Comment, size, h.EmptyLayer, o))
	}
	for ; layer < len(layerSizes); layer++ {
		var created time.Time
		if img.Config.Created != nil {
			created = *img.Config.Created
		}
		rows = append(rows, historyRow(created, "", "", layerSizes[layer], false, o))
	}
	// Newest first; only the newest names the image.
	for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
		rows[i], rows[j] = rows[j], rows[i]
	}
	for i := range rows {
		rows[i].ID = "<missing>"
	}
	if len(rows) > 0 {
		rows[0].ID = img.ID.String()
		if !o.NoTrunc {
			rows[0].ID = format.TruncateID(rows[0].ID)
		}
	}
	return rows, nil
}

func historyRow(created time.Time, createdBy, comment string, size int64, empty bool, o HistoryOptions) HistoryRow {
	r := HistoryRow{Comment: comment, EmptyLayer: empty}
	r.CreatedBy = strings.ReplaceAll(createdBy, "\t", " ")
	if !o.NoTrunc {
		r.CreatedBy = format.Ellipsis(r.CreatedBy, createdByWidth)
	}
	if !created.IsZero() {
		r.CreatedAt = created.Local().Format(time.RFC3339)
	}
	r.CreatedSince = r.CreatedAt
	if o.Human {
		r.CreatedSince = format.Ago(o.Now, created)
	}
	r.Size = strconv.FormatInt(size, 10)
	if o.Human {
		r.Size = format.Size(size)
	}
	return r
}
