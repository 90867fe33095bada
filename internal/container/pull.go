package container

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
)

// Auth is a registry credential: a username and password (or access
// token as password), or an identity token (an OAuth2 refresh token a
// registry's token service accepts). The zero Auth pulls anonymously. It
// never prints its secrets: String and GoString redact them.
type Auth struct {
	Username      string
	Password      string
	IdentityToken string
}

// IsZero reports whether a is anonymous.
func (a Auth) IsZero() bool { return a == Auth{} }

// String names the user only: "anonymous", "user alice", "identity token".
func (a Auth) String() string {
	switch {
	case a.IdentityToken != "":
		return "identity token"
	case a.Username != "":
		return "user " + a.Username
	default:
		return "anonymous"
	}
}

// GoString is String, so %#v does not print the password either.
func (a Auth) GoString() string { return "container.Auth{" + a.String() + "}" }

// EncodeAuth is the X-Registry-Auth header value for a and the registry
// serverAddress: the JSON AuthConfig of the Engine API, base64url encoded
// (https://docs.docker.com/engine/api/v1.41/#section/Authentication).
// The zero Auth encodes to "" (no header).
func EncodeAuth(a Auth, serverAddress string) (string, error) {
	if a.IsZero() {
		return "", nil
	}
	b, err := json.Marshal(registry.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		IdentityToken: a.IdentityToken,
		ServerAddress: serverAddress,
	})
	if err != nil {
		return "", fmt.Errorf("encode registry auth: %w", err)
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

// ErrRegistryAuth marks a pull the registry refused for its credentials.
var ErrRegistryAuth = errors.New("registry refused the credentials")

// Pull makes the image ref ("<repo>@sha256:<digest>") present on the node,
// from its registry with auth. An image already present is not pulled
// again (pulled is false): a digest names exactly one image. Errors name
// the registry and the image, never the credentials; a refusal for
// credentials also wraps ErrRegistryAuth.
func (r *Runtime) Pull(ctx context.Context, ref string, auth Auth) (pulled bool, err error) {
	dr, err := ParseDigestRef(ref)
	if err != nil {
		return false, err
	}
	if err := r.ready(ctx); err != nil {
		return false, err
	}
	present, err := r.imagePresent(ctx, dr.String())
	if err != nil {
		return false, fmt.Errorf("pull %s: %w", dr, err)
	}
	if present {
		return false, nil
	}
	enc, err := EncodeAuth(auth, dr.Domain)
	if err != nil {
		return false, err
	}
	fail := func(err error) error {
		if isAuthError(err) {
			return fmt.Errorf("pull %s from registry %s (%s): %w: %w", dr, dr.Domain, auth, ErrRegistryAuth, err)
		}
		return fmt.Errorf("pull %s from registry %s: %w", dr, dr.Domain, err)
	}
	resp, err := r.cli.ImagePull(ctx, dr.String(), client.ImagePullOptions{RegistryAuth: enc})
	if err != nil {
		return false, fail(err)
	}
	for msg, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return false, fail(err)
		}
		if msg.Error != nil {
			return false, fail(msg.Error)
		}
	}
	present, err = r.imagePresent(ctx, dr.String())
	if err != nil {
		return false, fmt.Errorf("pull %s: %w", dr, err)
	}
	if !present {
		return false, fail(errors.New("the pull finished without the image"))
	}
	r.log.Info("pulled image", "image", dr.String(), "registry", dr.Domain)
	return true, nil
}

func (r *Runtime) imagePresent(ctx context.Context, ref string) (bool, error) {
	_, err := r.cli.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("inspect image: %w", err)
	}
}

// isAuthError recognises a registry's refusal: the API's 401 or the
// messages dockerd passes on from the registry (distribution's
// UNAUTHORIZED and DENIED, "no basic auth credentials").
func isAuthError(err error) bool {
	if cerrdefs.IsUnauthorized(err) || cerrdefs.IsPermissionDenied(err) {
		return true
	}
	msg := strings.ToLower(err.Error())
	// Not a bare "denied": a local "permission denied" is not the registry's.
	for _, s := range []string{"unauthorized", "authentication required", "no basic auth credentials", "access denied", "access to the resource is denied"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
