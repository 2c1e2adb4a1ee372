package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNetwork runs containers on bridge networks of their own (a bridge
// name, subnets and an address pool directory made for the test): a
// busybox httpd published on loopback answers the host, two containers
// on a user network reach each other by name, and nothing is left after
// rm or after a holder's crash. All traffic stays between the host and
// the test's containers; NAT to the outside is checked by its rules.
func TestNetwork(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "bridge networks need root (CAP_NET_ADMIN)")
	_, err := exec.LookPath("nft")
	prerequisite(t, err == nil, "nft not installed")
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	dir, imgs := testImages(t)
	srv := startServer(t, underTest(), Filesystem, t.TempDir())
	pushImages(t, env, srv.Host, "net", dir, imgs)
	busybox := srv.Host + "/net/busybox:latest"

	suffix := randHex(3)
	bridge := "btest" + suffix
	pools := t.TempDir()
	b := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state"),
		env: append(os.Environ(), "BERTH_BRIDGE="+bridge, "BERTH_BRIDGE_SUBNET=10.213.7.0/24", "BERTH_IPAM_DIR="+pools)}
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", bridge).Run()
		deleteRulesTagged(t, "berth:net:"+bridge) // the default network's rules stay, as docker's
	})

	httpd := "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
	var webID string
	t.Run("published on loopback", func(t *testing.T) {
		port, anyPort := hostPort(t), hostPort(t)
		webID = strings.TrimSpace(b.ok("run", "-d", "--name", "web", "--hostname", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port),
			"-p", fmt.Sprintf("%d:80", anyPort), busybox, httpd))
		body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
		if body != "hello-from-web\n" {
			t.Errorf("GET on the published loopback port: %q", body)
		}
		out := b.ok("port", webID)
		for _, want := range []string{fmt.Sprintf("80/tcp -> 127.0.0.1:%d\n", port), fmt.Sprintf("80/tcp -> 0.0.0.0:%d\n", anyPort)} {
			if !strings.Contains(out, want) {
				t.Errorf("berth port: %q lacks %q", out, want)
			}
		}
		if out := b.ok("port", webID, "80/tcp"); !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d\n", port)) {
			t.Errorf("berth port ID 80/tcp: %q", out)
		}
		// The kernel's rules: NAT to the outside for the subnet, DNAT for
		// the port published on every address (not for loopback's).
		rules := nftTable(t)
		for _, want := range []string{
			fmt.Sprintf(`ip saddr 10.213.7.0/24 oifname != "%s" masquerade comment "berth:net:%s"`, bridge, bridge),
			fmt.Sprintf(`tcp dport %d dnat to 10.213.7.2:80 comment "berth:ctr:%s"`, anyPort, webID[:12]),
		} {
			if !strings.Contains(rules, want) {
				t.Errorf("nft ruleset lacks %q:\n%s", want, rules)
			}
		}
		if strings.Contains(rules, fmt.Sprintf("dport %d ", port)) {
			t.Errorf("a DNAT rule for the loopback port %d:\n%s", port, rules)
		}
		if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(b)) != "1" {
			t.Errorf("ip_forward is %q", b)
		}
		// The container's resolv.conf has no loopback resolver.
		resolv, _ := os.ReadFile(filepath.Join(b.state, "containers", webID, "resolv.conf"))
		if !strings.Contains(string(resolv), "nameserver ") || strings.Contains(string(resolv), "nameserver 127.") {
			t.Errorf("resolv.conf %q", resolv)
		}
		// A second container asking for the same port fails clearly.
		_, errOut, code := b.run("run", "--rm", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), busybox, "true")
		if code != 125 || !strings.Contains(errOut, "port is already allocated") || !strings.Contains(errOut, strconv.Itoa(port)) {
			t.Errorf("port conflict: exit %d, %q", code, errOut)
		}
	})

	t.Run("user network by name", func(t *testing.T) {
		net := "n" + suffix
		b.ok("network", "create", "--subnet", "10.213.8.0/24", net)
		defer b.run("network", "rm", net)
		if out := b.ok("network", "ls"); !strings.Contains(out, net) || !strings.Contains(out, "bridge") {
			t.Errorf("network ls: %q", out)
		}
		if out := b.ok("network", "inspect", net); !strings.Contains(out, `"Subnet": "10.213.8.0/24"`) {
			t.Errorf("network inspect: %q", out)
		}
		if _, errOut, code := b.run("network", "create", "--subnet", "10.213.8.128/25", net+"x"); code == 0 || !strings.Contains(errOut, "overlaps") {
			t.Errorf("an overlapping subnet: exit %d, %q", code, errOut)
		}
		// Reached by their names (docker's --name), by short id, and by
		// host name.
		alpha := strings.TrimSpace(b.ok("run", "-d", "--network", net, "--name", "alpha", "--hostname", "alpha-host", busybox, httpd))
		defer b.run("rm", "-f", alpha)
		beta := strings.TrimSpace(b.ok("run", "-d", "--network", net, "--name", "beta", busybox, "sleep 300"))
		// alpha's hosts file learnt beta when it joined.
		hosts, _ := os.ReadFile(filepath.Join(b.state, "containers", alpha, "hosts"))
		if !strings.Contains(string(hosts), "\tbeta\t"+beta[:12]+"\n") {
			t.Errorf("alpha's /etc/hosts after beta joined:\n%s", hosts)
		}
		out, errOut, code := b.run("run", "--rm", "--network", net, busybox,
			"wget -qO- http://alpha/ && wget -qO- http://"+alpha[:12]+"/ && wget -qO- http://alpha-host/ && ping -c1 -W2 beta >/dev/null && echo ping-ok")
		if code != 0 || out != "hello-from-alpha-host\nhello-from-alpha-host\nhello-from-alpha-host\nping-ok\n" {
			t.Errorf("by name: exit %d, %q, %q", code, out, errOut)
		}
		if _, errOut, code := b.run("network", "rm", net); code == 0 || !strings.Contains(errOut, "running containers") {
			t.Errorf("rm of a network in use: exit %d, %q", code, errOut)
		}
		b.ok("rm", "-f", beta)
		hosts, _ = os.ReadFile(filepath.Join(b.state, "containers", alpha, "hosts"))
		if strings.Contains(string(hosts), "beta") {
			t.Errorf("alpha's /etc/hosts after beta left:\n%s", hosts)
		}
		b.ok("rm", "-f", alpha)
		b.ok("network", "rm", net)
		if out := b.ok("network", "ls"); strings.Contains(out, net) {
			t.Errorf("network ls after rm: %q", out)
		}
		if ip, _ := exec.Command("ip", "-br", "link").Output(); strings.Contains(string(ip), "br-") && strings.Contains(nftTable(t), "10.213.8.0/24") {
			t.Errorf("the network's rules outlive it:\n%s", nftTable(t))
		}
	})

	t.Run("container network", func(t *testing.T) {
		if webID == "" {
			t.Skip("no web container")
		}
		out, errOut, code := b.run("run", "--rm", "--network", "container:web", busybox, "wget -qO- http://127.0.0.1/")
		if code != 0 || out != "hello-from-web\n" {
			t.Errorf("--network container:web: exit %d, %q, %q", code, out, errOut)
		}
	})

	t.Run("clean after rm", func(t *testing.T) {
		if webID == "" {
			t.Skip("no web container")
		}
		b.ok("rm", "-f", webID)
		checkGone(t, b, pools, webID, true)
	})

	t.Run("clean after a crash", func(t *testing.T) {
		port := hostPort(t)
		id := strings.TrimSpace(b.ok("run", "-d", "-p", fmt.Sprintf("%d:80", port), busybox, "sleep 300"))
		defer b.run("rm", "-f", id)
		raw, err := os.ReadFile(filepath.Join(b.state, "containers", id, "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		holder := jsonInt(string(raw), `"holder": `)
		if holder == 0 {
			t.Fatalf("no holder in %s", raw)
		}
		syscall.Kill(holder, syscall.SIGKILL)
		for i := 0; i < 100 && syscall.Kill(holder, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(nftTable(t), "berth:ctr:"+id[:12]) {
			t.Fatal("no rule left to reclaim: the test proves nothing")
		}
		b.ok("ps", "-a")
		checkGone(t, b, pools, id, false) // the rootfs stays mounted until rm
		b.ok("rm", "-f", id)
		checkGone(t, b, pools, id, true)
		// Nor a cgroup: the dead holder could not remove it, rm does.
		if left, _ := filepath.Glob("/sys/fs/cgroup/*/berth/" + id); len(left) > 0 {
			t.Errorf("cgroups left after rm: %v", left)
		}
		if left, _ := filepath.Glob("/sys/fs/cgroup/berth/" + id); len(left) > 0 {
			t.Errorf("cgroup left after rm: %v", left)
		}
	})
}

// checkGone fails if the container id left a veth, a rule, a lease or
// (with mounts) a mount.
func checkGone(t *testing.T, b berthCLI, pools, id string, mounts bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		links, _ := exec.Command("ip", "-br", "link").Output()
		leftLink := strings.Contains(string(links), "bth"+id[:12])
		leftRule := strings.Contains(nftTable(t), "berth:ctr:"+id[:12])
		var leftLease bool
		files, _ := filepath.Glob(filepath.Join(pools, "*.json"))
		for _, f := range files {
			if data, _ := os.ReadFile(f); strings.Contains(string(data), id) {
				leftLease = true
			}
		}
		mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
		leftMount := mounts && strings.Contains(string(mountinfo), id)
		if !leftLink && !leftRule && !leftLease && !leftMount {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: veth %v, nft rule %v, lease %v, mount %v", leftLink, leftRule, leftLease, leftMount)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func nftTable(t *testing.T) string {
	t.Helper()
	out, _ := exec.Command("nft", "list", "table", "ip", "berth").CombinedOutput()
	return string(out)
}

// deleteRulesTagged deletes the rules of berth's table whose comment is tag.
func deleteRulesTagged(t *testing.T, tag string) {
	out, _ := exec.Command("nft", "-a", "list", "table", "ip", "berth").Output()
	chain := ""
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "chain" {
			chain = f[1]
		}
		if i := strings.Index(line, "# handle "); i >= 0 && strings.Contains(line, `comment "`+tag+`"`) {
			if err := exec.Command("nft", "delete", "rule", "ip", "berth", chain, "handle", strings.TrimSpace(line[i+len("# handle "):])).Run(); err != nil {
				t.Errorf("deleting the rule %q: %v", line, err)
			}
		}
	}
}

func jsonInt(s, key string) int {
	i := strings.Index(s, key)
	if i < 0 {
		return 0
	}
	rest := s[i+len(key):]
	end := strings.IndexAny(rest, ",\n}")
	n, _ := strconv.Atoi(strings.TrimSpace(rest[:end]))
	return n
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// hostPort returns a TCP port free on this host just now.
func hostPort(t *testing.T) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// httpGet GETs url, retrying while the server starts.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	var last error
	for range 50 {
		resp, err := http.Get(url)
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == 200 {
				return string(body)
			}
			last = fmt.Errorf("status %d, %v", resp.StatusCode, err)
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, last)
	return ""
}
