package proxy

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Var describes one variable of the contract, read from Config's tags. It is
// what help output and the generated configuration reference are made from.
type Var struct {
	Name       string   // without EnvPrefix, e.g. "ACK_POLICY"
	Default    string   // the value Default applies; empty when there is none or it is derived
	DefaultDoc string   // the default as documentation states it, derived ones described
	Desc       string   // one-line description
	Kind       string   // one of "string", "enum", "int", "bool", "duration", "size"
	Allowed    []string // the values an enum accepts, in the order to list them
	Secret     bool     // Masked hides the value (or, for NATS_URL, the URL credentials)

	secret string // the secret tag: "", "true" or "userinfo"
	index  int    // field index in Config
}

// Env returns the variable's full name, e.g. "REPLICAR_ACK_POLICY".
func (v Var) Env() string { return EnvPrefix + v.Name }

// Kinds of Var.
const (
	KindString   = "string"
	KindEnum     = "enum"
	KindInt      = "int"
	KindBool     = "bool"
	KindDuration = "duration"
	KindSize     = "size"
)

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[ByteSize]()
	enumType     = reflect.TypeFor[enum]()
)

// vars is computed once from the tags; a field without an env tag or of a
// type the loader cannot parse is a programming error and panics on first
// use, which every test run hits.
var vars = sync.OnceValue(func() []Var {
	t := reflect.TypeFor[Config]()
	out := make([]Var, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "" {
			panic("proxy: Config." + f.Name + " has no env tag")
		}
		v := Var{
			Name:       name,
			Default:    f.Tag.Get("default"),
			DefaultDoc: f.Tag.Get("defaultdoc"),
			Desc:       f.Tag.Get("desc"),
			secret:     f.Tag.Get("secret"),
			index:      i,
		}
		v.Secret = v.secret != ""
		if v.DefaultDoc == "" {
			v.DefaultDoc = v.Default
		}
		switch {
		case f.Type == durationType:
			v.Kind = KindDuration
		case f.Type == sizeType:
			v.Kind = KindSize
		case f.Type.Implements(enumType):
			v.Kind = KindEnum
			v.Allowed = reflect.Zero(f.Type).Interface().(enum).enumValues()
		case f.Type.Kind() == reflect.String:
			v.Kind = KindString
		case f.Type.Kind() == reflect.Int:
			v.Kind = KindInt
		case f.Type.Kind() == reflect.Bool:
			v.Kind = KindBool
		default:
			panic("proxy: Config." + f.Name + " has a type the loader cannot parse")
		}
		out = append(out, v)
	}
	return out
})

// Vars returns every variable of the contract in Config's field order, which
// is the order the contract lists them in.
func Vars() []Var {
	vs := vars()
	out := make([]Var, len(vs))
	for i, v := range vs {
		v.Allowed = append([]string(nil), v.Allowed...)
		out[i] = v
	}
	return out
}

// LookupVar returns the variable called name (without EnvPrefix).
func LookupVar(name string) (Var, bool) {
	v, ok := lookupVar(name)
	if ok {
		v.Allowed = append([]string(nil), v.Allowed...)
	}
	return v, ok
}

func lookupVar(name string) (Var, bool) {
	for _, v := range vars() {
		if v.Name == name {
			return v, true
		}
	}
	return Var{}, false
}

func fieldOf(c *Config, v Var) reflect.Value { return reflect.ValueOf(c).Elem().Field(v.index) }

// Set parses value into the field of the variable called name (without
// EnvPrefix). Enum values are matched case-insensitively and surrounding
// blanks are ignored for all but plain strings, where they may be meant
// (a password). A value that does not parse returns a *VarError; one that
// parses but is out of range is left for Validate. An unknown name returns
// an error wrapping ErrUnknownVar.
func (c *Config) Set(name, value string) error {
	v, ok := lookupVar(name)
	if !ok {
		return fmt.Errorf("%w %s%s", ErrUnknownVar, EnvPrefix, name)
	}
	bad := func(want string) error {
		return &VarError{Name: v.Env(), Value: maskValue(v, value), Want: want}
	}
	f := fieldOf(c, v)
	trimmed := strings.TrimSpace(value)
	switch v.Kind {
	case KindString:
		f.SetString(value)
	case KindEnum:
		s := strings.ToLower(trimmed)
		if !contains(v.Allowed, s) {
			return bad(wantOneOf(v.Allowed))
		}
		f.SetString(s)
	case KindDuration:
		d, err := time.ParseDuration(trimmed)
		if err != nil {
			return bad("want a duration such as 500ms, 5s or 1m")
		}
		f.SetInt(int64(d))
	case KindSize:
		n, err := ParseByteSize(trimmed)
		if err != nil {
			return bad("want a size such as 65536, 64mb or 1gb (k = 1000, kb = 1024, as in redis.conf)")
		}
		f.SetInt(int64(n))
	case KindInt:
		n, err := strconv.Atoi(trimmed)
		if err != nil {
			return bad("want a whole number")
		}
		f.SetInt(int64(n))
	case KindBool:
		b, ok := parseBool(trimmed)
		if !ok {
			return bad("want true or false")
		}
		f.SetBool(b)
	}
	return nil
}

// parseBool accepts what strconv.ParseBool does plus the yes/no and on/off
// that redis.conf and my.cnf use.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "t", "1", "yes", "on":
		return true, true
	case "false", "f", "0", "no", "off":
		return false, true
	}
	return false, false
}

// Value formats the field of the variable called name (without EnvPrefix)
// as text that Set reads back to the same value: "5s", "64mb", "true". An
// optional duration that is unset formats as "". Secrets are returned as
// they are; call Masked first to print them.
func (c Config) Value(name string) string {
	v, ok := lookupVar(name)
	if !ok {
		return ""
	}
	f := fieldOf(&c, v)
	switch v.Kind {
	case KindDuration:
		d := time.Duration(f.Int())
		if d == 0 && v.Default == "" {
			return ""
		}
		return formatDuration(d)
	case KindSize:
		return ByteSize(f.Int()).String()
	case KindInt:
		return strconv.FormatInt(f.Int(), 10)
	case KindBool:
		return strconv.FormatBool(f.Bool())
	default:
		return f.String()
	}
}

// formatDuration is time.Duration.String without the trailing zero units
// ("2m" rather than "2m0s"), which is how people write them.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
