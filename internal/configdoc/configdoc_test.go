package configdoc

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replicar/replicar/proxy"
)

// The committed reference is what the code renders: a variable added,
// renamed or redescribed in proxy.Config without regenerating fails here.
func TestConfigDocIsCurrent(t *testing.T) {
	path := filepath.Join("..", "..", filepath.FromSlash(Path))
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v (create it with: %s)", Path, err, Regenerate)
	}
	want := Markdown(proxy.Vars())
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s differs from proxy.Config at line %d:\n  file: %q\n  code: %q\nregenerate it with: %s", Path, i+1, g, w, Regenerate)
		}
	}
}

// Every variable has a section with its description, type and default,
// and a secret says how it is masked.
func TestMarkdownCoversEveryVar(t *testing.T) {
	doc := string(Markdown(proxy.Vars()))
	for _, v := range proxy.Vars() {
		head := "\n### `" + v.Env() + "`\n"
		i := strings.Index(doc, head)
		if i < 0 {
			t.Fatalf("no section for %s", v.Env())
		}
		section := doc[i+len(head):]
		if j := strings.Index(section, "\n### "); j >= 0 {
			section = section[:j]
		}
		if v.Desc == "" || !strings.Contains(section, escape(v.Desc)) {
			t.Errorf("%s: description missing", v.Env())
		}
		if !strings.Contains(section, "- default: ") || !strings.Contains(section, "- type: ") {
			t.Errorf("%s: type or default missing:\n%s", v.Env(), section)
		}
		for _, a := range v.Allowed {
			if !strings.Contains(section, "`"+a+"`") {
				t.Errorf("%s: allowed value %q missing", v.Env(), a)
			}
		}
		if v.Secret != strings.Contains(section, "- secret: ") {
			t.Errorf("%s: secret %v but section says:\n%s", v.Env(), v.Secret, section)
		}
		if !strings.Contains(doc, "[`"+v.Env()+"`](#"+anchor(v.Env())+")") {
			t.Errorf("%s: not in the summary table", v.Env())
		}
	}
	// The sample credentials never survive masking.
	if strings.Count(doc, "s3cret") != strings.Count(doc, "`"+secretSample+"` shows as") {
		t.Error("a masked value still shows the sample password")
	}
}
