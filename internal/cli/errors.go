package cli

import (
	"errors"
	"fmt"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
)

// Exit codes (README.md, "Exit codes"): the only place they are decided.
const (
	ExitOK       = 0
	ExitFailure  = 1
	ExitUsage    = 2 // bad usage or input, detected before any API call
	ExitConflict = 3 // compare-and-swap kept losing
	ExitAuth     = 4 // authentication or permission
)

// UsageError is bad input: one line naming the flag and the value.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// usagef builds a UsageError.
func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// flagErr turns a validation error on a flag's value into a UsageError that
// names the flag: `--name "Bad_Name!": must be …`.
func flagErr(flag string, err error) error {
	var fe *cluster.FieldError
	if errors.As(err, &fe) {
		return usagef("--%s %q: %s", flag, fe.Value, fe.Reason)
	}
	return usagef("--%s: %v", flag, err)
}

// AuthError marks an authentication or permission failure from any backend.
type AuthError struct{ Err error }

func (e *AuthError) Error() string { return e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }

// isUsage says err is bad input: the CLI's own *UsageError or one an
// operation found (*ops.InputError), wherever it is wrapped.
func isUsage(err error) bool {
	var ue *UsageError
	var ie *ops.InputError
	return errors.As(err, &ue) || errors.As(err, &ie)
}

// exitCode maps an error to the process exit code. DigitalOcean's 401/403
// are typed where they arise (*cloud.AuthError, internal/cloud's wrap):
// exit 4 from every command, whatever step met them.
func exitCode(err error) int {
	var ae *AuthError
	var cae *cloud.AuthError
	switch {
	case err == nil:
		return ExitOK
	case isUsage(err), errors.Is(err, cluster.ErrClusterNotFound):
		return ExitUsage
	case errors.Is(err, cluster.ErrConflict):
		return ExitConflict
	case errors.As(err, &ae), errors.As(err, &cae), errors.Is(err, bucket.ErrAccessDenied):
		return ExitAuth
	}
	return ExitFailure
}

// tokenHint is what to do about a DO token DigitalOcean refused: for a
// 401, where the token came from and how to store a new one; for a 403,
// where the scopes are listed ("" for any other error). It never holds
// the token.
func tokenHint(err error) string {
	var cae *cloud.AuthError
	var own *AuthError // auth init's, which says what it checked
	switch {
	case !errors.As(err, &cae), errors.As(err, &own):
		return ""
	case cae.Rejected():
		return "check DIGITALOCEAN_ACCESS_TOKEN or the context's token_file; `dynia auth init` stores a new token"
	}
	return "the token may lack a scope this needs: docs/credentials.md lists them"
}

// retryable says, in words, why a failure is worth running again as it
// is: the state store or another service (the DigitalOcean API) did not
// answer, or kept answering 429/5xx. "" for everything else. Every dynia command can be
// re-run (docs/reliability.md): a re-run finishes what this one left.
func retryable(err error) string {
	switch {
	case err == nil, isUsage(err):
		return ""
	case errors.Is(err, bucket.ErrUnavailable), errors.Is(err, bucket.ErrThrottled):
		return "the state store did not answer: retryable, re-run the same command once it does"
	case cloud.Transient(err):
		// DO's 429/5xx after godo's retries, or no answer (DO's API, a
		// registry, a DNS provider).
		return "no answer or a temporary error: retryable, re-run the same command"
	}
	return ""
}
