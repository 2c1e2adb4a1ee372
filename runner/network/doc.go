// Package network gives containers the networks docker users expect: a
// default bridge network (bridge berth0 on 172.30.0.0/16, both set in
// <state>/network.json or by BERTH_BRIDGE and BERTH_BRIDGE_SUBNET),
// user-defined bridge networks (berth network create), a veth pair per
// container with an address from a file-locked pool, NAT to the outside,
// published ports (-p, -P) and the container's /etc/hosts and
// /etc/resolv.conf.
//
// It may import the standard library, golang.org/x/sys, the runtime-spec
// types and github.com/vishvananda/netlink and netns (links, addresses
// and routes through netlink); nftables rules go through the nft tool.
// Never the container runtime or the image stores (depcheck_test.go):
// callers hand it a container's id, directory, lock file and init pid.
//
// # A container's start on a bridge network
//
//	Attach (before the init is started)
//	  bind each published host port (the forwarder holds it: a taken port fails here)
//	  write <container>/resolv.conf: the host's resolvers but loopback ones
//	  lease an address (pool file, flocked), write <container>/hosts and the
//	    other members' hosts files (user-defined networks only, as docker)
//	  make the bridge with the gateway (the subnet's first address), ip_forward=1
//	  nft: berth's table, the network's masquerade and forward rules, the
//	    container's DNAT rules (published ports not on loopback)
//	Connect(pid) (the init exists, before it execs)
//	  veth: host end bth<id> on the bridge, peer made as eth0 in the init's
//	    namespace, with the address and a default route via the gateway
//	Detach (the container ended)
//	  forwarders closed, DNAT rules and veth deleted, lease released,
//	    the other members' hosts files rewritten
//
// Published ports on loopback (127.0.0.1:8080:80) and connections made on
// this host reach the container through the forwarder, a user-space relay
// in the process that holds the container (docker's userland proxy);
// traffic from other machines is DNATed by the kernel.
//
// # Layout
//
//	<state>/network.json              Config (optional)
//	<state>/networks/<name>.json      a user-defined Network
//	<pool dir>/<bridge>.json          the bridge's leases (Pool); <pool dir> is
//	                                  /run/berth/ipam: the bridges are the host's,
//	                                  shared by all state directories, and so are
//	                                  their pools
//	<state>/containers/<id>/network.json  the container's Settings
//	<state>/containers/<id>/hosts, resolv.conf  bind-mounted into it
//
// # Crashes
//
// A lease names the container's lock file, which its holder (the
// foreground berth run or the detached supervisor) keeps flocked. Any
// change to a pool first drops the leases whose lock nobody holds, with
// their DNAT rules and veth; Networks.Reclaim does it for all pools, and
// berth calls it where it lists containers (ps), so that what a killed
// berth left is cleaned by the next command.
package network
