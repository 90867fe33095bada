package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/digitalocean/godo"
)

// Sentinels matched with errors.Is against the errors this package returns.
var (
	// ErrAuth: the token is invalid (401) or lacks the scope (403).
	ErrAuth = errors.New("not authorized")
	// ErrNotFound: the resource does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrUnprocessable: DO refused the request as it stands (422), e.g. a
	// reserved IP with a pending event or a droplet limit reached.
	ErrUnprocessable = errors.New("unprocessable")
	// ErrNoSnapshot: no private image matches the name prefix in the region.
	ErrNoSnapshot = errors.New("no snapshot")
)

// APIError is an error response from the DigitalOcean API, named after the
// operation that got it. errors.Is(err, ErrAuth|ErrNotFound|ErrUnprocessable)
// matches by status.
type APIError struct {
	Op         string // e.g. "create droplet dynia-a1"
	StatusCode int
	Message    string // DO's message, e.g. "The floating IP already has a pending event."
	RequestID  string
	Attempts   int // attempts godo made, retries included (0 when unknown)
	err        error
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cloud: %s: %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	if e.RequestID != "" {
		b.WriteString(" [request " + e.RequestID + "]")
	}
	return b.String()
}

// Unwrap returns godo's *ErrorResponse.
func (e *APIError) Unwrap() error { return e.err }

// Is maps the status to the package sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrAuth:
		return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrUnprocessable:
		return e.StatusCode == http.StatusUnprocessableEntity
	}
	return false
}

// wrap names the operation on an error from godo, turning API error
// responses into *APIError. Transport errors (including a cancelled context)
// keep their chain, so errors.Is(err, context.Canceled) still holds.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var er *godo.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		msg := er.Message
		if msg == "" && er.NestedError != nil {
			msg = er.NestedError.Message
		}
		ae := &APIError{
			Op:         op,
			StatusCode: er.Response.StatusCode,
			Message:    msg,
			RequestID:  er.RequestID,
			Attempts:   er.Attempts,
			err:        err,
		}
		if ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden {
			return &AuthError{APIError: ae}
		}
		return ae
	}
	return fmt.Errorf("cloud: %s: %w", op, err)
}

// AuthError is DigitalOcean refusing the token: 401 (the token is wrong,
// expired or revoked: DO answers every request so) or 403 (the token lacks
// a scope the request needs, or DO refuses the request for this account,
// e.g. deleting a default VPC). Every error of this package that DO
// answered 401 or 403 is an *AuthError; errors.As with *APIError still
// finds the answer, and errors.Is(err, ErrAuth) holds. Its text never holds
// the token (DO's answers do not echo it).
// DO's API reference: https://docs.digitalocean.com/reference/api/ ("Errors",
// "Authentication"), and the scopes: https://docs.digitalocean.com/reference/api/scopes/.
type AuthError struct{ *APIError }

// Rejected reports a 401: the token itself is refused, not one request.
func (e *AuthError) Rejected() bool { return e.StatusCode == http.StatusUnauthorized }

func (e *AuthError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cloud: %s: ", e.Op)
	if e.Rejected() {
		b.WriteString("DigitalOcean rejected the token (401 Unauthorized")
	} else {
		b.WriteString("DigitalOcean refused the request with this token (403 Forbidden")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	b.WriteString(")")
	if e.RequestID != "" {
		b.WriteString(" [request " + e.RequestID + "]")
	}
	return b.String()
}

// Unwrap returns the *APIError.
func (e *AuthError) Unwrap() error { return e.APIError }

// Transient reports whether err may go away by itself: DO's 429 and 5xx
// answers, and transport failures (connection refused or reset, a request
// timeout). A cancellation is not transient. A request timeout matches
// context.DeadlineExceeded just as the end of the caller's own deadline
// does, so callers check their ctx first (poll does).
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode == http.StatusTooManyRequests || ae.StatusCode >= 500
	}
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// isPendingEvent reports DO's 422 for a second action on a locked reserved IP.
func isPendingEvent(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusUnprocessableEntity &&
		strings.Contains(strings.ToLower(ae.Message), "pending event")
}

// SnapshotError says no usable snapshot was found and how to get one.
type SnapshotError struct {
	Prefix, Region string
	// Elsewhere lists regions holding a matching snapshot, if any.
	Elsewhere []string
}

func (e *SnapshotError) Error() string {
	if len(e.Elsewhere) > 0 {
		return fmt.Sprintf("cloud: find snapshot %q in %s: no snapshot in that region (found in %s); transfer it to %s or build one there",
			e.Prefix, e.Region, strings.Join(e.Elsewhere, ", "), e.Region)
	}
	return fmt.Sprintf("cloud: find snapshot %q in %s: no private image with that name prefix; build the node image with Packer (packer/) or use --bootstrap",
		e.Prefix, e.Region)
}

// Is matches ErrNoSnapshot.
func (e *SnapshotError) Is(target error) bool { return target == ErrNoSnapshot }
