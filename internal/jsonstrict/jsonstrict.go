// Package jsonstrict checks a JSON document's shape before encoding/json
// decodes it, for the documents dynia reads from places others can write
// (the cluster state, pull.json, node status reports).
//
// encoding/json keeps the last of two equal keys and matches an object's
// keys to struct fields case-insensitively (Unicode simple case folding:
// "NAME", "Name" and "name" all fill the field "name"). A document that
// says one thing to a careful reader (or to another JSON library) and
// another to dynia is how a validated value gets smuggled past a check, so
// Check refuses:
//
//   - a document larger than the caller's limit;
//   - anything but whitespace after the one JSON value;
//   - a key twice in one object, or two keys of an object that decodes into
//     a struct (or of an object dynia does not model) that are equal under
//     case folding;
//   - a key that names a struct field only up to case (encoding/json would
//     take "Private_IP" for "private_ip");
//   - nesting deeper than MaxDepth.
//
// Map keys are compared exactly: FOO and foo are two environment variables.
// Unknown keys are not Check's business (the caller's decoder allows or
// refuses them); their values are still checked for duplicates. CheckKnown
// also refuses them, naming the first one's path (ErrUnknownField), for a
// reader that must not drop what it does not know.
package jsonstrict

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// MaxDepth bounds the nesting of arrays and objects. dynia's documents nest
// at most five deep; encoding/json's own limit is 10000.
const MaxDepth = 32

// Error is a refused document: Path locates the problem (nodes[1].id; empty
// for the whole document).
type Error struct {
	Path   string
	Reason string
	// Err is the *json.SyntaxError of a malformed document, ErrUnknownField
	// for CheckKnown's unknown key, else nil.
	Err error
}

// ErrUnknownField is a key that names no field of the struct its object
// decodes into (CheckKnown only); the *Error's Path is the key's path.
var ErrUnknownField = errors.New("unknown field")

// Unwrap returns the syntax error, if any.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// Check checks b, which the caller is about to decode into a T, against the
// rules in the package comment, with at most maxBytes bytes. Every error is
// an *Error; one for a syntax error wraps encoding/json's.
func Check[T any](b []byte, maxBytes int) error {
	return CheckType(b, reflect.TypeFor[T](), maxBytes)
}

// CheckKnown is Check that also refuses a key naming no field of the struct
// its object decodes into (maps and values dynia does not model are
// exempt): an *Error whose Path is the key's path and whose Err is
// ErrUnknownField. The document is checked in order, so an earlier problem
// of another kind is reported first.
func CheckKnown[T any](b []byte, maxBytes int) error {
	return check(b, reflect.TypeFor[T](), maxBytes, true)
}

// CheckType is Check with the target type as a value (nil: no struct
// knowledge, only duplicate keys, size, depth and trailing data).
func CheckType(b []byte, t reflect.Type, maxBytes int) error {
	return check(b, t, maxBytes, false)
}

func check(b []byte, t reflect.Type, maxBytes int, known bool) error {
	if len(b) > maxBytes {
		return &Error{Reason: fmt.Sprintf("document is %d bytes, over the limit of %d", len(b), maxBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	w := walker{dec: dec, known: known}
	if err := w.value(t, "", 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		// The trailing token is not shown: it may hold anything, newlines
		// included, and errors are one line.
		return &Error{Reason: "trailing data after the JSON document"}
	}
	return nil
}

type walker struct {
	dec   *json.Decoder
	known bool // refuse keys that name no struct field (CheckKnown)
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// opaque says whether values of t decode themselves (time.Time, custom
// types): Check then knows nothing of their keys.
func opaque(t reflect.Type) bool {
	if t == nil {
		return true
	}
	return t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) ||
		t.Implements(textUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType)
}

// value reads one JSON value that decodes into t (nil: unknown).
func (w *walker) value(t reflect.Type, path string, depth int) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if opaque(t) {
		t = nil
	}
	tok, err := w.token(path)
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar
	}
	if depth >= MaxDepth {
		return &Error{Path: path, Reason: fmt.Sprintf("nested deeper than %d", MaxDepth)}
	}
	switch d {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; w.dec.More(); i++ {
			if err := w.value(elem, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	case '{':
		if err := w.object(t, path, depth); err != nil {
			return err
		}
	}
	_, err = w.token(path) // the closing delimiter
	return err
}

// token reads the next token; the document ending here is an error.
func (w *walker) token(path string) (json.Token, error) {
	tok, err := w.dec.Token()
	switch {
	case errors.Is(err, io.EOF):
		return nil, &Error{Path: path, Reason: "not valid JSON: unexpected end of the document"}
	case err != nil:
		return nil, &Error{Path: path, Reason: "not valid JSON: " + err.Error(), Err: err}
	}
	return tok, nil
}

func (w *walker) object(t reflect.Type, path string, depth int) error {
	var fields *structFields
	var elem reflect.Type
	isMap := false
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = fieldsOf(t)
		case reflect.Map:
			isMap, elem = true, t.Elem()
		}
	}
	seen := map[string]bool{}
	folded := map[string]string{}
	for w.dec.More() {
		tok, err := w.token(path)
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return &Error{Path: path, Reason: fmt.Sprintf("object key %v is not a string", tok)}
		}
		if seen[key] {
			return &Error{Path: path, Reason: fmt.Sprintf("duplicate key %q", key)}
		}
		seen[key] = true
		if !isMap {
			f := fold(key)
			if other, dup := folded[f]; dup {
				return &Error{Path: path, Reason: fmt.Sprintf("keys %q and %q differ only in case (encoding/json reads them as one)", other, key)}
			}
			folded[f] = key
		}
		sub := join(path, key)
		var next reflect.Type
		switch {
		case isMap:
			next = elem
		case fields != nil:
			if fd, exact := fields.exact[key]; exact {
				next = fd.typ
			} else if fd, variant := fields.folded[fold(key)]; variant {
				return &Error{Path: path, Reason: fmt.Sprintf("key %q must be spelled %q (encoding/json would match it case-insensitively)", key, fd.name)}
			} else if w.known {
				return &Error{Path: sub, Reason: "unknown field", Err: ErrUnknownField}
			}
		}
		if err := w.value(next, sub, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// join appends key to path: a plain key as .key, any other quoted as
// ["key"], so a path never carries a newline or a misleading dot.
func join(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if r != '_' && r != '-' && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// fold is the key under Unicode simple case folding, as encoding/json
// compares field names (bytes.EqualFold).
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

type field struct {
	name string
	typ  reflect.Type
}

// structFields are a struct's JSON fields by name and by folded name.
type structFields struct {
	exact, folded map[string]field
}

var fieldCache sync.Map // reflect.Type → *structFields

func fieldsOf(t reflect.Type) *structFields {
	if m, ok := fieldCache.Load(t); ok {
		return m.(*structFields)
	}
	m := &structFields{exact: map[string]field{}, folded: map[string]field{}}
	addFields(m, t, 0)
	fieldCache.Store(t, m)
	return m
}

func addFields(m *structFields, t reflect.Type, depth int) {
	if depth > 8 {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := sf.Type
		if sf.Anonymous && name == "" {
			et := ft
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				addFields(m, et, depth+1) // promoted fields
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if _, dup := m.exact[name]; !dup {
			m.exact[name] = field{name: name, typ: ft}
			m.folded[fold(name)] = field{name: name, typ: ft}
		}
	}
}
