package view_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/view"
)

func TestImageRows(t *testing.T) {
	now := created.Add(3 * time.Hour)
	app := testImage(t, host+"/team/app:1.0", host+"/team/app:latest", host+"/other/tool@"+older.String())
	dangling := testImage(t)
	dangling.ID = digest.FromString("dangling")
	dangling.Config.Config.Labels = map[string]string{"role": "db"}
	manifests := map[string]digest.Digest{host + "/team/app:1.0": index, host + "/team/app:latest": manifest, host + "/other/tool@" + older.String(): older}
	rows := func(filters ...string) []string {
		t.Helper()
		f, err := view.ParseImageFilters(filters)
		if err != nil {
			t.Fatalf("filters %q: %v", filters, err)
		}
		f.DefaultRegistry = host
		var out []string
		for _, r := range view.ImageRows([]image.Image{app, dangling}, manifests, view.ImageRowOptions{Now: now, Filter: f}) {
			out = append(out, r.Repository+"|"+r.Tag+"|"+r.Digest[:min(len(r.Digest), 10)]+"|"+r.ID)
		}
		return out
	}
	appID, dID := app.ID.Encoded()[:12], dangling.ID.Encoded()[:12]
	all := []string{
		host + "/team/app|1.0|sha256:bbb|" + appID,
		host + "/team/app|latest|sha256:aaa|" + appID,
		host + "/other/tool|<none>|sha256:ccc|" + appID,
		"<none>|<none>|sha256:aaa|" + dID,
	}
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, all},
		{[]string{"dangling=true"}, all[3:]},
		{[]string{"dangling=false"}, all[:3]},
		{[]string{"dangling=1", "dangling=TRUE"}, all[3:]},
		{[]string{"reference=" + host + "/team/app"}, all[:2]},
		{[]string{"reference=team/app"}, all[:2]},
		{[]string{"reference=team/app:1.0"}, all[:1]},
		{[]string{"reference=*/app:latest"}, all[1:2]},
		{[]string{"reference=*/*:1.*"}, all[:1]},
		{[]string{"reference=*/*/tool*"}, all[2:3]},
		{[]string{"reference=other/*", "reference=team/app:latest"}, all[1:3]},
		{[]string{"reference=team"}, nil},
		{[]string{"reference=team/*", "dangling=true"}, nil},
		{[]string{"label=role"}, all[3:]},
		{[]string{"label=role=db"}, all[3:]},
		{[]string{"label=role=web"}, nil},
		{[]string{"label=x=<y>", "dangling=false"}, all[:3]},
	} {
		if got := rows(tc.filters...); !slices.Equal(got, tc.want) {
			t.Errorf("filters %q:\n%q\nwant\n%q", tc.filters, got, tc.want)
		}
	}

	r := view.ImageRows([]image.Image{app}, manifests, view.ImageRowOptions{Now: now, NoTrunc: true})[0]
	if r.ID != app.ID.String() || r.Size != "12.3MB" || r.Platform != "linux/arm64/v8" || r.CreatedSince != "3 hours ago" ||
		r.CreatedAt != created.Local().String() || r.Digest != index.String() {
		t.Errorf("row: %+v", r)
	}
	noDate := testImage(t, host+"/x:1")
	noDate.Config.Created = nil
	if r := view.ImageRows([]image.Image{noDate}, nil, view.ImageRowOptions{Now: now})[0]; r.CreatedSince != "N/A" || r.CreatedAt != "" || r.Digest != "<none>" {
		t.Errorf("row of an image without created or digest: %+v", r)
	}

	for _, bad := range [][]string{
		{"dangling"}, {"dangling=maybe"}, {"dangling=true", "dangling=false"}, {"reference=[x"}, {"color=red"}, {"=x"}, {"label="},
	} {
		if _, err := view.ParseImageFilters(bad); !errors.Is(err, view.ErrInvalidFilter) {
			t.Errorf("filters %q: %v, want ErrInvalidFilter", bad, err)
		}
	}
}

func TestContainerRow(t *testing.T) {
	now := created.Add(time.Hour)
	st := container.State{
		ID: "0123456789ab", Image: "team/app:1.0", Command: []string{"/bin/sh", "-c", `echo "a very long command line that goes on"`},
		Created: created, Status: container.StatusExited, ExitCode: 137, OOMKilled: true, Finished: now.Add(-2 * time.Minute),
	}
	st.Name = "web"
	r := view.NewContainerRow(st, now, false)
	want := view.ContainerRow{Names: "web",
		ID: st.ID, Image: st.Image, Command: `"/bin/sh -c echo \"a very long …"`, RunningFor: "About an hour ago",
		CreatedAt: created.Local().String(), Status: "Exited (137) 2 minutes ago (OOM killed)", State: "exited",
	}
	if r != want {
		t.Errorf("row:\n%+v\nwant\n%+v", r, want)
	}
	r.SetSize(1<<20, 80_000_000)
	if r.Size != "1.05MB (virtual 81MB)" {
		t.Errorf("size %q", r.Size)
	}
	r.SetSize(0, 0)
	if r.Size != "0B (virtual 0B)" {
		t.Errorf("size of nothing %q", r.Size)
	}
	if r := view.NewContainerRow(st, now, true); r.Command != strconv.Quote(strings.Join(st.Command, " ")) {
		t.Errorf("--no-trunc command %s", r.Command)
	}
	check := &container.HealthConfig{Test: []string{"CMD", "true"}}
	for _, tc := range []struct {
		st   container.State
		want string
	}{
		{container.State{Status: container.StatusCreated}, "Created"},
		{container.State{Status: container.StatusRunning, Started: now.Add(-3 * time.Second)}, "Up 3 seconds"},
		{container.State{Status: container.StatusExited, Finished: now}, "Exited (0) Less than a second ago"},
		{container.State{Status: container.StatusRestarting, ExitCode: 3, Finished: now.Add(-2 * time.Second)}, "Restarting (3) 2 seconds ago"},
		{container.State{Status: container.StatusRunning, Started: now.Add(-5 * time.Second), Healthcheck: check}, "Up 5 seconds (health: starting)"},
		{container.State{Status: container.StatusRunning, Started: now.Add(-5 * time.Second), Healthcheck: check,
			Health: &container.Health{Status: container.HealthHealthy}}, "Up 5 seconds (healthy)"},
		{container.State{Status: container.StatusRunning, Started: now.Add(-5 * time.Second), Healthcheck: check,
			Health: &container.Health{Status: container.HealthUnhealthy, FailingStreak: 3}}, "Up 5 seconds (unhealthy)"},
		{container.State{Status: container.StatusRunning, Started: now.Add(-5 * time.Second), Healthcheck: &container.HealthConfig{Test: []string{"NONE"}}}, "Up 5 seconds"},
	} {
		if got := view.Status(tc.st, now); got != tc.want {
			t.Errorf("Status(%+v) = %q, want %q", tc.st, got, tc.want)
		}
	}
	if f := view.PsFormat(true); f != "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}" {
		t.Errorf("PsFormat(true) = %q", f)
	}
}

func TestContainerFilter(t *testing.T) {
	check := &container.HealthConfig{Test: []string{"CMD", "true"}}
	states := []container.State{
		{ID: "aaaa00000001", Name: "web", Image: "busybox:latest", ImageID: "sha256:1111222233334444", Status: container.StatusRunning,
			Healthcheck: check, Health: &container.Health{Status: container.HealthHealthy}},
		{ID: "aaaa00000002", Name: "web-old", Image: "busybox:latest", ImageID: "sha256:1111222233334444", Status: container.StatusExited, ExitCode: 3},
		{ID: "bbbb00000003", Name: "db", Image: "reg.example/team/pg:16", ImageID: "sha256:5555666677778888", Status: container.StatusExited},
		{ID: "bbbb00000004", Name: "cache", Image: "reg.example/team/pg:16", ImageID: "sha256:5555666677778888", Status: container.StatusCreated},
		{ID: "cccc00000005", Name: "flaky", Image: "busybox", ImageID: "sha256:1111222233334444", Status: container.StatusRestarting,
			Healthcheck: check},
	}
	labels := map[string]map[string]string{"sha256:1111222233334444": {"tier": "front"}, "sha256:5555666677778888": {"tier": "data", "db": ""}}
	match := func(filters ...string) string {
		t.Helper()
		f, err := view.ParseContainerFilters(filters)
		if err != nil {
			t.Fatalf("filters %q: %v", filters, err)
		}
		var got []string
		for _, st := range states {
			if f.Match(st, labels[st.ImageID]) {
				got = append(got, st.Name)
			}
		}
		return strings.Join(got, ",")
	}
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		{nil, "web,web-old,db,cache,flaky"},
		{[]string{"name=web"}, "web,web-old"},
		{[]string{"name=^web$"}, "web"},
		{[]string{"name=/db"}, "db"},
		{[]string{"name=db", "name=cache"}, "db,cache"},
		{[]string{"id=aaaa"}, "web,web-old"},
		{[]string{"id=bbbb00000004"}, "cache"},
		{[]string{"status=exited"}, "web-old,db"},
		{[]string{"status=running", "status=restarting"}, "web,flaky"},
		{[]string{"status=paused"}, ""},
		{[]string{"ancestor=busybox"}, "web,web-old,flaky"},
		{[]string{"ancestor=busybox:latest"}, "web,web-old"},
		{[]string{"ancestor=reg.example/team/pg:16"}, "db,cache"},
		{[]string{"ancestor=sha256:5555666677778888"}, "db,cache"},
		{[]string{"ancestor=55556666"}, "db,cache"},
		{[]string{"ancestor=pg"}, ""},
		{[]string{"label=tier=front"}, "web,web-old,flaky"},
		{[]string{"label=db"}, "db,cache"},
		{[]string{"label=tier=back"}, ""},
		{[]string{"exited=3"}, "web-old"},
		{[]string{"exited=0"}, "db"},
		{[]string{"exited=0", "exited=3"}, "web-old,db"},
		{[]string{"health=healthy"}, "web"},
		{[]string{"health=starting"}, "flaky"},
		{[]string{"health=none"}, "web-old,db,cache"},
		{[]string{"name=web", "status=exited"}, "web-old"},
		{[]string{"ancestor=busybox", "exited=3", "name=web"}, "web-old"},
	} {
		if got := match(tc.filters...); got != tc.want {
			t.Errorf("filters %q: %q, want %q", tc.filters, got, tc.want)
		}
	}
	for _, bad := range [][]string{{"name"}, {"name=["}, {"status=sleeping"}, {"exited=x"}, {"health=sick"}, {"color=red"}, {"id="}} {
		if _, err := view.ParseContainerFilters(bad); !errors.Is(err, view.ErrInvalidFilter) {
			t.Errorf("filters %q: %v, want ErrInvalidFilter", bad, err)
		}
	}
}
