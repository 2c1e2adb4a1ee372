package network

import (
	"fmt"
	"time"
)

// ShortID is the network's ID as `network ls` shows it: 12 digits.
func (nw Network) ShortID() string { return shortID(nw.ID) }

// Inspected is a network as `docker network inspect` shows one.
type Inspected struct {
	Name       string
	ID         string `json:"Id"`
	Created    time.Time
	Scope      string
	Driver     string
	IPAM       struct{ Config []map[string]string }
	Containers map[string]map[string]string
	Options    map[string]string
}

// Inspect describes nw with the containers whose leases are held.
func Inspect(nw Network, leases []Lease) Inspected {
	j := Inspected{Name: nw.Name, ID: nw.ID, Created: nw.Created, Scope: "local", Driver: "bridge",
		Containers: map[string]map[string]string{},
		Options:    map[string]string{"com.docker.network.bridge.name": nw.Bridge}}
	j.IPAM.Config = []map[string]string{{"Subnet": nw.Subnet.String(), "Gateway": nw.Gateway.String()}}
	for _, l := range leases {
		if !LockHeld(l.Lock) {
			continue
		}
		name := ""
		if len(l.Names) > 0 {
			name = l.Names[0]
		}
		j.Containers[l.ID] = map[string]string{"Name": name,
			"IPv4Address": fmt.Sprintf("%s/%d", l.IP, nw.Subnet.Bits())}
	}
	return j
}
