// Package duration holds Duration, a length of time as a user wrote it.
//
// Policies, auto_arms and the config file take durations as text in Go's
// syntax ("90m", "24h", "1h30m"; no "d" suffix). The API and the stored
// records echo that text exactly, so a Duration keeps it next to the parsed
// value: it is parsed once, where it is read, and never again on the request
// path.
package duration

import (
	"fmt"
	"time"
)

// Duration is a time.Duration together with the text it was parsed from.
// The zero value is "no duration": empty text, length 0; it is what an
// absent or empty field reads as. Values are immutable and safe for
// concurrent use.
//
// In JSON and YAML a Duration is its text, a string. Reading the empty
// string gives the zero value; any other text must parse (Parse). Range
// checks (at least a second, at most a day, …) are not the type's: each
// field's rule lives where the field is validated.
type Duration struct {
	text string
	d    time.Duration
}

// Parse reads s in Go's duration syntax (time.ParseDuration): a sequence of
// decimal numbers with units ns, us (or µs), ms, s, m, h, such as "300ms",
// "1.5h" or "-2h45m". The result keeps s as written.
func Parse(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return Duration{}, fmt.Errorf("%q is not a duration like \"90m\" or \"24h\": %w", s, err)
	}
	return Duration{text: s, d: d}, nil
}

// MustParse is Parse for text known to be valid (defaults in code); it
// panics on an error.
func MustParse(s string) Duration {
	d, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return d
}

// Std is the parsed length of time; 0 for the zero value.
func (d Duration) Std() time.Duration { return d.d }

// String is the text the duration was parsed from, as written; "" for the
// zero value.
func (d Duration) String() string { return d.text }

// IsZero reports whether d is the zero value (no text). It makes the
// `omitzero` JSON option leave an unset duration out.
func (d Duration) IsZero() bool { return d.text == "" }

// MarshalText returns the text as written.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.text), nil }

// UnmarshalText parses text with Parse; empty text gives the zero value.
func (d *Duration) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*d = Duration{}
		return nil
	}
	v, err := Parse(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
