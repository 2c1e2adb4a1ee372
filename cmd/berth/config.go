package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/berth-registry/berth/internal/config"
	"github.com/spf13/cobra"
)

func (a *app) newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect the configuration of berth serve",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "env",
			Short: "List the BERTH_* environment variables, the keys they override and their defaults",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VARIABLE\tKEY\tTYPE\tDEFAULT")
				for _, v := range config.EnvVars() {
					def := v.Default
					if def == "" {
						def = `""`
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Name, v.Key, v.Type, def)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				// Lists of sections (gc.retention) have no variable.
				for _, k := range config.YAMLOnlyKeys() {
					fmt.Fprintf(cmd.OutOrStdout(), "\n%s has no variable: it is a list of mappings, set in the YAML file only.\n", k)
				}
				return nil
			},
		},
		a.newConfigShowCmd(),
	)
	return cmd
}

func (a *app) newConfigShowCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "show [--config FILE]",
		Short: "Validate and print the effective configuration: defaults, then FILE, then BERTH_* variables (secrets masked)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(file, a.lookupEnv)
			if err != nil {
				return usageError(err)
			}
			// Secrets (storage.s3.secretKey) are masked: this output ends
			// up in terminals, tickets and CI logs.
			shown := cfg.Redacted()
			return shown.WriteYAML(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "YAML config `FILE` (none: defaults)")
	return cmd
}
