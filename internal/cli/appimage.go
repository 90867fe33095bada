package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/dynia/dynia/internal/secrets"
)

// parseImageRef checks --image's shape (a Docker reference: repo[:tag] or
// repo@sha256:…) without touching the network.
func parseImageRef(ref string, insecure []string) (name.Reference, error) {
	if ref == "" {
		return nil, usagef("--image: required (e.g. registry.example.com/app:v2)")
	}
	var opts []name.Option
	if r, err := name.ParseReference(ref); err == nil && slices.Contains(insecure, r.Context().RegistryStr()) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, usagef("--image %q: not an image reference (registry/repository:tag or @sha256:digest)", ref)
	}
	// An implicit :latest moves under the operator's feet: ask for a tag.
	last := ref[strings.LastIndex(ref, "/")+1:]
	if !strings.Contains(last, ":") && !strings.Contains(last, "@") {
		return nil, usagef("--image %q: name a tag or a digest (e.g. %s:v2)", ref, ref)
	}
	return r, nil
}

// resolveDigest asks the registry for the digest ref names now, so every
// node pulls the same bytes even if the tag moves later. Errors name the
// registry and the image; the credentials never appear.
func resolveDigest(ctx context.Context, ref name.Reference, auth *secrets.RegistryAuth) (string, error) {
	opts := []remote.Option{remote.WithContext(ctx),
		remote.WithTransport(&http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 30 * time.Second})}
	if auth != nil {
		opts = append(opts, remote.WithAuth(authn.FromConfig(authn.AuthConfig{
			Username: auth.Username, Password: auth.Password, IdentityToken: auth.IdentityToken})))
	}
	desc, err := remote.Head(ref, opts...)
	if err != nil {
		var te *transport.Error
		reg := ref.Context().RegistryStr()
		switch {
		case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
			return "", fmt.Errorf("registry %s refused access to %s (%d): check --registry-auth-file", reg, ref, te.StatusCode)
		case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
			return "", fmt.Errorf("registry %s has no image %s", reg, ref)
		}
		return "", fmt.Errorf("resolve %s at registry %s: %v", ref, reg, redactURLs(err.Error()))
	}
	return ref.Context().Digest(desc.Digest.String()).String(), nil
}

// redactURLs keeps a registry error on one line.
func redactURLs(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// loadRegistryAuth reads --registry-auth-file: Docker's config.json
// ({"auths": {"host": {"auth": base64(user:pass)}}}, the format `docker
// login` writes) or {"username","password"}; the file must be 0600.
func loadRegistryAuth(path, registry string) (*secrets.RegistryAuth, error) {
	if path == "" {
		return nil, nil
	}
	if err := checkPrivateFile("--registry-auth-file", path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--registry-auth-file %q: %v", path, errors.Unwrap(err))
	}
	var doc struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			Username      string `json:"username"`
			Password      string `json:"password"`
			IdentityToken string `json:"identitytoken"`
		} `json:"auths"`
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, usagef("--registry-auth-file %q: not JSON (want Docker's config.json or {\"username\",\"password\"})", path)
	}
	if doc.Username != "" {
		return &secrets.RegistryAuth{Server: registry, Username: doc.Username, Password: doc.Password}, nil
	}
	for host, a := range doc.Auths {
		h := strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
		h, _, _ = strings.Cut(h, "/")
		if h != registry && !(registry == name.DefaultRegistry && (h == "docker.io" || h == "registry-1.docker.io")) {
			continue
		}
		out := &secrets.RegistryAuth{Server: registry, Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			user, pass, ok := strings.Cut(string(raw), ":")
			if err != nil || !ok {
				return nil, usagef("--registry-auth-file %q: auths.%s.auth is not base64(user:password)", path, host)
			}
			out.Username, out.Password = user, pass
		}
		return out, nil
	}
	return nil, usagef("--registry-auth-file %q: no credentials for registry %s", path, registry)
}

// checkPrivateFile refuses a secret file group or others may read.
func checkPrivateFile(flag, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return usagef("%s %q: %v", flag, path, errors.Unwrap(err))
	}
	if st.Mode().Perm()&0o077 != 0 {
		return usagef("%s %q: mode %04o lets others read it; chmod 600 it", flag, path, st.Mode().Perm())
	}
	return nil
}
