package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// errUsage marks an error in how the command was called (a bad flag or
// argument, an invalid setting): main exits with status 2 for these.
var errUsage = errors.New("usage")

// usageError wraps err so that errors.Is(err, errUsage) holds; its message
// is err's.
func usageError(err error) error {
	return usageErr{err: err}
}

// usageErr is an error in how the command was called.
type usageErr struct{ err error }

func (e usageErr) Error() string   { return e.err.Error() }
func (e usageErr) Unwrap() []error { return []error{e.err, errUsage} }

// declareOptions adds one flag per option to fs.
func declareOptions(fs *pflag.FlagSet, opts []option) error {
	for _, o := range opts {
		switch def := o.def.(type) {
		case string:
			fs.StringP(o.key, o.short, def, o.usage)
		case bool:
			fs.BoolP(o.key, o.short, def, o.usage)
		case int:
			fs.IntP(o.key, o.short, def, o.usage)
		case time.Duration:
			fs.DurationP(o.key, o.short, def, o.usage)
		case []string:
			fs.StringSliceP(o.key, o.short, def, o.usage)
		default:
			return fmt.Errorf("option %q: unsupported default of type %T", o.key, o.def)
		}
	}
	return nil
}

// settings reads a command's settings with the precedence flag >
// PROGLOG_* environment variable > config file > default. It only answers for
// keys its command declared, remembers which it was asked for (a test checks
// that every declared key is read), and collects invalid values into Err
// instead of reading them as zero, which is what viper's GetInt does with
// "abc".
type settings struct {
	v        *viper.Viper
	declared map[string]bool
	read     map[string]bool
	errs     []error
}

// loadSettings binds every option of opts to its flag in fs and to its
// environment variable, reads the config file if one is named, and returns
// the settings. A config file key that no command declares is an error, so a
// misspelt key cannot be silently ignored; an unknown PROGLOG_* variable gets
// a warning on warn.
func loadSettings(fs *pflag.FlagSet, opts []option, warn io.Writer) (*settings, error) {
	s := &settings{
		v:        viper.New(),
		declared: make(map[string]bool, len(opts)),
		read:     make(map[string]bool, len(opts)),
	}
	for _, o := range opts {
		s.declared[o.key] = true
		if f := fs.Lookup(o.key); f != nil {
			if err := s.v.BindPFlag(o.key, f); err != nil {
				return nil, fmt.Errorf("bind flag --%s: %w", o.key, err)
			}
		}
		if err := s.v.BindEnv(o.key, envName(o.key)); err != nil {
			return nil, fmt.Errorf("bind %s: %w", envName(o.key), err)
		}
	}
	known := knownKeys()
	warnUnknownEnv(os.Environ(), known, warn)

	if !s.declared[keyConfigFile] {
		return s, nil
	}
	path := s.String(keyConfigFile)
	if path == "" {
		return s, nil
	}
	if err := checkConfigFileKeys(path, known); err != nil {
		return nil, usageError(err)
	}
	s.v.SetConfigFile(path)
	s.v.SetConfigType("yaml")
	if err := s.v.ReadInConfig(); err != nil {
		return nil, usageError(fmt.Errorf("config file %s: %w", path, err))
	}
	return s, nil
}

// checkConfigFileKeys fails when the YAML file at path has a key that is
// no command's setting.
func checkConfigFileKeys(path string, known map[string]bool) error {
	file := viper.New()
	file.SetConfigFile(path)
	file.SetConfigType("yaml")
	if err := file.ReadInConfig(); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var unknown []string
	for _, k := range file.AllKeys() {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("config file %s: unknown setting %s (settings are the flag names, e.g. %s)",
			path, strings.Join(quoteAll(unknown), ", "), keyACLModelFile)
	}
	return nil
}

// warnUnknownEnv writes one line to warn for each PROGLOG_* variable in
// environ that names no setting.
func warnUnknownEnv(environ []string, known map[string]bool, warn io.Writer) {
	knownEnv := make(map[string]bool, len(known))
	for k := range known {
		knownEnv[envName(k)] = true
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !knownEnv[name] {
			fmt.Fprintf(warn, "proglog: warning: %s is not a proglog setting; ignored\n", name)
		}
	}
}

// knownKeys is every key some command declares.
func knownKeys() map[string]bool {
	known := make(map[string]bool)
	for _, opts := range [][]option{
		agentOptions(""), produceOptions(), consumeOptions(), serversOptions(), benchOptions(), keygenOptions(),
	} {
		for _, o := range opts {
			known[o.key] = true
		}
	}
	return known
}

// get returns the raw value of key, or false after recording an error when
// the command did not declare key.
func (s *settings) get(key string) (any, bool) {
	if !s.declared[key] {
		s.errs = append(s.errs, fmt.Errorf("internal error: setting %q is not declared by this command", key))
		return nil, false
	}
	s.read[key] = true
	return s.v.Get(key), true
}

// invalid records that key holds a value that is not of its type.
func (s *settings) invalid(key string, val any, want string) {
	s.errs = append(s.errs, usageError(fmt.Errorf("invalid %s %q for --%s (or %s, or %s in the config file)",
		want, fmt.Sprint(val), key, envName(key), key)))
}

// String returns a string setting.
func (s *settings) String(key string) string {
	val, ok := s.get(key)
	if !ok {
		return ""
	}
	str, err := cast.ToStringE(val)
	if err != nil {
		s.invalid(key, val, "string")
	}
	return str
}

// Int returns an integer setting.
func (s *settings) Int(key string) int {
	val, ok := s.get(key)
	if !ok {
		return 0
	}
	n, err := cast.ToIntE(val)
	if err != nil {
		s.invalid(key, val, "integer")
	}
	return n
}

// Bool returns a boolean setting.
func (s *settings) Bool(key string) bool {
	val, ok := s.get(key)
	if !ok {
		return false
	}
	b, err := cast.ToBoolE(val)
	if err != nil {
		s.invalid(key, val, "boolean")
	}
	return b
}

// Duration returns a duration setting ("500ms", "10s", "2m").
func (s *settings) Duration(key string) time.Duration {
	val, ok := s.get(key)
	if !ok {
		return 0
	}
	d, err := cast.ToDurationE(val)
	if err != nil {
		s.invalid(key, val, "duration")
	}
	return d
}

// List returns a list setting. Every source may give it comma-separated
// ("a,b" in a flag or a variable) or, in the config file, as a YAML list;
// blanks are dropped.
func (s *settings) List(key string) []string {
	val, ok := s.get(key)
	if !ok {
		return nil
	}
	items, err := cast.ToStringSliceE(val)
	if err != nil {
		s.invalid(key, val, "list")
		return nil
	}
	var out []string
	for _, item := range items {
		for _, part := range strings.Split(item, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// Err reports every invalid value read so far.
func (s *settings) Err() error {
	return errors.Join(s.errs...)
}

// quoteAll quotes each string.
func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
