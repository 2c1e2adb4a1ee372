package importfence_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if importfence imports anything but the standard
// library, or if a package of the module imports it outside its tests: it
// brings testing and the go tool into whatever links it.
func TestDependencyFence(t *testing.T) {
	const pkg = mod + "/internal/importfence"
	importfence.Check(t, pkg, importfence.Rule{Deny: []string{"..."}, Except: []string{"std"}})

	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s/...: %v\n%s", mod, err, out)
	}
	for line := range strings.Lines(string(out)) {
		importer, imports, _ := strings.Cut(strings.TrimSpace(line), " ")
		for imp := range strings.FieldsSeq(imports) {
			if imp == pkg {
				t.Errorf("%s imports %s outside its tests", importer, pkg)
			}
		}
	}
}
