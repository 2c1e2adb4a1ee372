package view

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/format"
)

// WriteStats writes `berth stats --no-stream`'s table of list to w, in
// docker's columns: two samples of each container's cgroup a second
// apart (its CPU share needs two), as docker's first reading. A
// container whose figures cannot be read gets a row of dashes; its error
// is returned when named (the user asked for it), else dropped (it
// stopped meanwhile).
func WriteStats(w io.Writer, list []*container.Container, named bool) []error {
	prev := make([]container.Stats, len(list))
	for i, c := range list {
		prev[i], _ = c.Stats()
	}
	if len(list) > 0 {
		time.Sleep(time.Second)
	}
	var errs []error
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS")
	for i, c := range list {
		id, name := format.TruncateID(c.ID), c.Name()
		if name == "" {
			name = id
		}
		cur, err := c.Stats()
		if err != nil {
			if named {
				errs = append(errs, err)
			}
			fmt.Fprintf(tw, "%s\t%s\t--\t-- / --\t--\t--\t--\t--\n", id, name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f%%\t%s / %s\t%.2f%%\t%s / %s\t%s / %s\t%d\n", id, name,
			container.CPUPercent(prev[i], cur), binarySize(cur.Memory), binarySize(cur.MemoryLimit), cur.MemoryPercent(),
			format.Size(int64(cur.NetRx)), format.Size(int64(cur.NetTx)),
			format.Size(int64(cur.BlockRead)), format.Size(int64(cur.BlockWrite)), cur.Pids)
	}
	if err := tw.Flush(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// binarySize formats n as docker's memory figures: 1024-based, "12.5MiB".
func binarySize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v, i = v/1024, i+1
	}
	return fmt.Sprintf("%.4g%s", v, units[i])
}
