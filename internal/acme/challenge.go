package acme

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/bucket"
)

// ChallengePathPrefix is where HTTP-01 validation fetches a token
// (RFC 8555 section 8.3).
const ChallengePathPrefix = "/.well-known/acme-challenge/"

const (
	// MaxTokenLen bounds a token. RFC 8555 asks for at least 128 bits of
	// entropy (22 base64url characters); Let's Encrypt's are 43.
	MaxTokenLen = 128
	// maxKeyAuthLen bounds what the handler serves: a key authorization is
	// the token, a dot and a 43-character JWK thumbprint (RFC 8555 section 8.1).
	maxKeyAuthLen = MaxTokenLen + 1 + 64
	// hitTTL is how long a found key authorization is served from memory:
	// a CA validates from several vantage points within seconds, and each
	// fetch should not cost a bucket GET.
	hitTTL = 10 * time.Second
	// missTTL is how long a missing token stays missing, bounding the
	// bucket GETs a scanner can cause; the Issuer writes a token before it
	// asks the CA to validate, so a real token is never cached as missing.
	missTTL = time.Second
	// maxCached bounds the cache; past it the cache is emptied.
	maxCached = 1024
	// fetchTimeout bounds one bucket read for a request.
	fetchTimeout = 10 * time.Second
)

// ValidToken reports whether token is a non-empty base64url string without
// padding of at most MaxTokenLen characters (RFC 8555 section 8.3).
func ValidToken(token string) bool {
	if token == "" || len(token) > MaxTokenLen {
		return false
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// ChallengeHandler answers GET and HEAD /.well-known/acme-challenge/<token>
// with the key authorization the Issuer stored at ChallengeKey(token):
// 200 with the bytes (application/octet-stream), 404 for a token that is
// not stored or not a valid token (ValidToken) or any other path, 405 for
// other methods, 503 when the store fails. Answers are cached in memory
// briefly (found: 10 s, missing: 1 s). log may be nil.
func ChallengeHandler(store Store, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &challengeHandler{store: store, log: log, now: time.Now, cache: map[string]cached{}}
}

type cached struct {
	body    []byte // nil: missing
	expires time.Time
}

type challengeHandler struct {
	store Store
	log   *slog.Logger
	now   func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

func (h *challengeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, ChallengePathPrefix)
	if !ok || !ValidToken(token) {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := h.lookup(r.Context(), token)
	if err != nil {
		h.log.Warn("acme: challenge lookup failed", "token", token, "err", err)
		http.Error(w, "challenge store unavailable", http.StatusServiceUnavailable)
		return
	}
	if body == nil {
		http.NotFound(w, r)
		return
	}
	h.log.Info("acme: served challenge", "token", token, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body) // the client went away: nothing to do
	}
}

// lookup returns the key authorization, nil when missing.
func (h *challengeHandler) lookup(ctx context.Context, token string) ([]byte, error) {
	now := h.now()
	h.mu.Lock()
	if c, ok := h.cache[token]; ok && now.Before(c.expires) {
		h.mu.Unlock()
		return c.body, nil
	}
	h.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	obj, err := h.store.Get(ctx, ChallengeKey(token), "")
	var body []byte
	switch {
	case errors.Is(err, bucket.ErrNotFound):
	case err != nil:
		return nil, err
	case len(obj.Body) == 0 || len(obj.Body) > maxKeyAuthLen:
		// Not something the Issuer wrote: do not serve it.
		h.log.Warn("acme: challenge object has an unexpected size", "token", token, "bytes", len(obj.Body))
	default:
		body = obj.Body
	}
	ttl := missTTL
	if body != nil {
		ttl = hitTTL
	}
	h.mu.Lock()
	if len(h.cache) >= maxCached {
		clear(h.cache)
	}
	h.cache[token] = cached{body: body, expires: now.Add(ttl)}
	h.mu.Unlock()
	return body, nil
}
