package configdoc

//go:generate go run ./gen -o ../../docs/CONFIG.md

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/replicar/replicar/proxy"
)

// Path is where the reference lives, from the module root.
const Path = "docs/CONFIG.md"

// Regenerate is the command that rewrites Path, for messages.
const Regenerate = "go generate ./internal/configdoc"

// secretSample is a value with credentials, to show how a secret is
// masked: entirely, or only the credentials inside URLs.
const secretSample = "nats://app:s3cret@nats1:4222"

// Markdown renders the reference for vars, in their order.
func Markdown(vars []proxy.Var) []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("<!-- Generated from proxy.Config by internal/configdoc; do not edit. Regenerate with: %s -->\n\n", Regenerate)
	p("# Configuration reference\n\n")
	p("A node is configured only through environment variables, each starting with `%s`.\n", proxy.EnvPrefix)
	p("An empty variable counts as unset. `replicar help` lists them with their defaults,\n")
	p("`replicar config` prints the effective configuration with secrets masked (`--json` for\n")
	p("JSON), and a bad value stops the node at start with one line naming the variable, the\n")
	p("value and what is allowed. An unknown `%s` variable is reported as a warning, with\n", proxy.EnvPrefix)
	p("the closest known name.\n\n")

	p("| variable | type | default |\n|---|---|---|\n")
	for _, v := range vars {
		p("| [`%s`](#%s) | %s | %s |\n", v.Env(), anchor(v.Env()), kindName(v), defaultCell(v))
	}
	p("\n## Value formats\n\n")
	p("- **duration**: Go's syntax, a number and a unit: `500ms`, `5s`, `1m30s`.\n")
	p("- **size**: bytes, or a number and a unit as in redis.conf: `k`, `m`, `g` are powers of\n")
	p("  1000 and `kb`, `mb`, `gb` powers of 1024 (`kib`, `mib`, `gib` too): `65536`, `512k`, `64mb`.\n")
	p("- **bool**: `true`/`false`, also `yes`/`no`, `on`/`off`, `1`/`0`.\n")
	p("- **enum**: one of the values listed, in any case.\n")
	p("- **host:port**: an address; a listen address may use `0.0.0.0` for every interface.\n")
	p("  The node's own listen addresses (`LISTEN`, `REPL_LISTEN`, `HTTP_LISTEN`, and\n")
	p("  `NATS_LISTEN` with the embedded NATS) must use distinct ports.\n")

	p("\n## Variables\n")
	for _, v := range vars {
		p("\n### `%s`\n\n", v.Env())
		p("%s\n\n", escape(strings.TrimSpace(v.Desc)))
		p("- type: %s\n", kindName(v))
		if len(v.Allowed) > 0 {
			p("- values: %s\n", codeList(v.Allowed))
		}
		p("- default: %s\n", defaultCell(v))
		if v.Secret {
			p("- secret: %s\n", secretNote(v))
		}
	}
	return b.Bytes()
}

// anchor is the GitHub heading anchor of a `NAME` heading.
func anchor(env string) string { return strings.ToLower(env) }

func kindName(v proxy.Var) string {
	switch v.Kind {
	case proxy.KindEnum:
		return "enum"
	case proxy.KindInt:
		return "integer"
	default:
		return v.Kind
	}
}

func defaultCell(v proxy.Var) string {
	switch {
	case v.DefaultDoc == "":
		return "empty"
	case v.DefaultDoc == v.Default:
		return "`" + v.Default + "`"
	default:
		return escape(v.DefaultDoc) // a derived default, described in words
	}
}

// escape keeps text literal in Markdown, in a table cell too: "<hostname>"
// would otherwise be taken for an HTML tag.
func escape(s string) string {
	return strings.NewReplacer("<", "&lt;", ">", "&gt;", "|", "\\|").Replace(s)
}

func codeList(xs []string) string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = "`" + x + "`"
	}
	return strings.Join(out, ", ")
}

// secretNote says how the variable is masked, found by masking a sample
// value with the code that `replicar config` and the logs use.
func secretNote(v proxy.Var) string {
	c := proxy.Default()
	if err := c.Set(v.Name, secretSample); err != nil {
		return "masked by `replicar config` and in the logs"
	}
	masked := c.Masked().Value(v.Name)
	if !strings.Contains(masked, "nats1") {
		return fmt.Sprintf("`replicar config` and the logs show `%s` in its place", masked)
	}
	return fmt.Sprintf("`replicar config` and the logs hide the credentials in it: `%s` shows as `%s`", secretSample, masked)
}
