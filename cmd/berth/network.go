package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/lifecycle"
	"github.com/berth-registry/berth/runner/network"
)

// openNetworks opens the networks of the state directory f names.
func (a *app) openNetworks(f *imageFlags) (*network.Networks, error) {
	dir, err := a.stateDir(f)
	if err != nil {
		return nil, err
	}
	return lifecycle.OpenNetworks(dir)
}

// networkUsage turns an invalid-input error into a usage error.
func networkUsage(err error) error {
	if errors.Is(err, network.ErrInvalid) {
		return usageError(err)
	}
	return err
}

// newNetworkCmd is `berth network`: create, ls, rm and inspect
// user-defined bridge networks.
func (a *app) newNetworkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Manage networks (bridge networks on which containers reach each other by name)",
	}
	f := &imageFlags{}
	flags := &cobra.Command{} // the state flags, for every subcommand
	a.addImageFlags(flags, f)
	cmd.PersistentFlags().AddFlagSet(flags.Flags())

	var subnet string
	create := &cobra.Command{
		Use:   "create [--subnet CIDR] NAME",
		Short: "Create a bridge network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nets, err := a.openNetworks(f)
			if err != nil {
				return err
			}
			nw, err := nets.Create(args[0], subnet)
			if err != nil {
				return networkUsage(err)
			}
			fmt.Fprintln(a.stdout, nw.ID)
			return nil
		},
	}
	create.Flags().StringVar(&subnet, "subnet", "", "the network's IPv4 subnet in `CIDR` form (default: a free /24 of 172.31.0.0/16)")

	var quiet bool
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			nets, err := a.openNetworks(f)
			if err != nil {
				return err
			}
			all, err := nets.List()
			if err != nil {
				return err
			}
			if quiet {
				for _, nw := range all {
					fmt.Fprintln(a.stdout, nw.ShortID())
				}
				return nil
			}
			w := tabwriter.NewWriter(a.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(w, "NETWORK ID\tNAME\tDRIVER\tSCOPE")
			fmt.Fprintln(w, "-\tnone\tnull\tlocal")
			fmt.Fprintln(w, "-\thost\thost\tlocal")
			for _, nw := range all {
				fmt.Fprintf(w, "%s\t%s\tbridge\tlocal\n", nw.ShortID(), nw.Name)
			}
			return w.Flush()
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the network IDs")

	rm := &cobra.Command{
		Use:     "rm NETWORK...",
		Aliases: []string{"remove"},
		Short:   "Remove one or more networks",
		Args:    needArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nets, err := a.openNetworks(f)
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range args {
				if _, err := nets.Remove(name); err != nil {
					errs = append(errs, networkUsage(err))
					continue
				}
				fmt.Fprintln(a.stdout, name)
			}
			return errors.Join(errs...)
		},
	}

	inspect := &cobra.Command{
		Use:   "inspect NETWORK...",
		Short: "Show networks as JSON",
		Args:  needArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nets, err := a.openNetworks(f)
			if err != nil {
				return err
			}
			var out []network.Inspected
			var errs []error
			for _, name := range args {
				nw, err := nets.Get(name)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				leases, err := nets.Pool(nw).Leases()
				if err != nil {
					errs = append(errs, err)
					continue
				}
				out = append(out, network.Inspect(nw, leases))
			}
			if len(out) > 0 {
				b, _ := json.MarshalIndent(out, "", "    ")
				fmt.Fprintln(a.stdout, string(b))
			}
			return errors.Join(errs...)
		},
	}
	cmd.AddCommand(create, ls, rm, inspect)
	return cmd
}

// newPortCmd is `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`: the
// published ports of a running container.
func (a *app) newPortCmd() *cobra.Command {
	cmd, _ := a.containerCmd("port CONTAINER [PRIVATE_PORT[/PROTO]]", "List a container's published ports", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			if len(args) > 2 {
				return usageError(errors.New("port takes a container and at most one port"))
			}
			c, err := s.containers.Get(args[0])
			if err != nil {
				return err
			}
			set, err := network.LoadSettings(c.Dir)
			if err != nil {
				return err
			}
			nets, err := a.openNetworks(f)
			if err != nil {
				return err
			}
			lease, ok, err := nets.Lease(set, c.ID)
			if err != nil || !ok {
				return err
			}
			ports := slices.Clone(lease.Ports)
			if len(args) == 2 {
				port, proto, err := network.ParsePortFilter(args[1])
				if err != nil {
					return usageError(err)
				}
				ports = slices.DeleteFunc(ports, func(p network.PortMapping) bool { return p.ContainerPort != port || p.Proto != proto })
				if len(ports) == 0 {
					return fmt.Errorf("no public port '%s' published for %s", args[1], c.ID)
				}
				for _, p := range ports {
					fmt.Fprintln(a.stdout, strings.TrimPrefix(p.String(), fmt.Sprintf("%d/%s -> ", p.ContainerPort, p.Proto)))
				}
				return nil
			}
			for _, p := range ports {
				fmt.Fprintln(a.stdout, p.String())
			}
			return nil
		})
	return cmd
}
