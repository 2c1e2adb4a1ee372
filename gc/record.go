package gc

import (
	"context"
	"encoding/json"
	"time"

	"github.com/berth-registry/berth/storage/store"
)

// RunRecord is what a collection leaves behind (Options.RecordAs): when it
// ran, by whom, what it planned and what it deleted. The web UI's storage
// page shows the last one.
type RunRecord struct {
	By       string        `json:"by"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	DryRun   bool          `json:"dryRun"` // always false today: dry runs leave no record
	// Planned counts what the run planned to delete (Bytes: the
	// reclaimable bytes).
	Planned Counts `json:"planned"`
	Deleted Counts `json:"deleted"`
	Spared  Counts `json:"spared"`
}

// record stores rep as the last run's record; a failure is only logged
// (on a full disk, the record is what may not fit).
func record(ctx context.Context, st *store.Store, by string, rep Report, log interface {
	Warn(msg string, args ...any)
}) {
	if by == "" {
		return
	}
	r := RunRecord{By: by, Start: rep.Start, Duration: rep.Duration, DryRun: rep.DryRun,
		Planned: Counts{Tags: len(rep.Tags), Manifests: len(rep.Manifests), Blobs: len(rep.Blobs),
			Bytes: rep.ReclaimableBytes, LayerLinks: len(rep.LayerLinks), Uploads: len(rep.Uploads)},
		Deleted: rep.Deleted, Spared: rep.Spared}
	b, err := json.Marshal(r)
	if err == nil {
		err = st.SaveLastRun(context.WithoutCancel(ctx), b)
	}
	if err != nil {
		log.Warn("gc: could not store the record of this run (the web UI shows the previous one)", "error", err)
	}
}

// LastRun returns the record of the last collection that left one; ok is
// false when none did.
func LastRun(ctx context.Context, st *store.Store) (RunRecord, bool, error) {
	b, ok, err := st.LastRun(ctx)
	if err != nil || !ok {
		return RunRecord{}, false, err
	}
	var r RunRecord
	if json.Unmarshal(b, &r) != nil {
		return RunRecord{}, false, nil
	}
	return r, true, nil
}
