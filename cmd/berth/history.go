package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/format"
	"github.com/berth-registry/berth/runner/view"
)

// newHistoryCmd is `berth history` (and `berth image history`).
func (a *app) newHistoryCmd() *cobra.Command {
	var f imageFlags
	var o view.HistoryOptions
	var quiet bool
	var tmpl string
	cmd := &cobra.Command{
		Use:   "history [--no-trunc] [-H=false] [-q] [--format FORMAT] IMAGE",
		Short: "Show the history of an image",
		Long: `Show the history of IMAGE from its config, newest first: one line per
entry, with the size of the layer it made (0B for the entries that made
none, such as ENV or CMD). Only the newest line shows the image's ID; the
others show <missing>, as docker does for images it did not build.
CREATED BY is cut at 45 characters unless --no-trunc; -H=false prints
times in RFC 3339 and sizes in bytes. --format takes a Go template over
.ID .CreatedSince .CreatedAt .CreatedBy .Size .Comment ("table ..." for
columns).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError(err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if quiet {
				tmpl = "{{.ID}}"
			}
			t, err := format.Parse(tmpl, view.HistoryFormat)
			if err != nil {
				return usageError(err)
			}
			images, err := a.openImageStore(&f)
			if err != nil {
				return err
			}
			o.Now = time.Now()
			rows, err := view.Inspector{Images: images}.History(args[0], o)
			if err != nil {
				return fmt.Errorf("history: %w", err)
			}
			p := t.NewPrinter(a.stdout, view.HistoryHeaders)
			for _, r := range rows {
				if err := p.Print(r); err != nil {
					return err
				}
			}
			return p.Flush()
		},
	}
	a.addImageFlags(cmd, &f)
	cmd.Flags().BoolVar(&o.NoTrunc, "no-trunc", false, "do not truncate IDs and CREATED BY")
	cmd.Flags().BoolVarP(&o.Human, "human", "H", true, "print sizes and dates for people (-H=false: bytes and RFC 3339)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the IDs")
	cmd.Flags().StringVar(&tmpl, "format", "", "print each line through a Go `TEMPLATE`")
	return cmd
}
