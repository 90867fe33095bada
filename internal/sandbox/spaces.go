package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/dynia/dynia/internal/dosim"
)

// Spaces keys in the sandbox. DigitalOcean scopes a Spaces access key to
// buckets, each read (list and read objects) or readwrite (also write and
// delete), or gives it fullaccess to every bucket, creating buckets
// included (https://docs.digitalocean.com/products/spaces/how-to/manage-access/#access-keys).
// The simulator mints keys through the API; spacesKeys makes versitygw
// honour them, so a key the sandbox hands a node really is limited:
//
//   - every key is a versitygw account (its internal IAM, --iam-dir): role
//     "user" (no bucket creation; sees only buckets it owns or a policy
//     grants), "userplus" for fullaccess (may create buckets);
//   - every bucket gets a bucket policy listing, per permission, the keys
//     granted on it (Principal = access key id, which is how versitygw
//     names an account without an ARN); a bucket no key names has none.
//     The root account (the CLI's key) bypasses policies.
//
// It reconciles versitygw's accounts and policies with the simulator's keys
// on every key change (the simulator's hook, before the API answers, so a
// minted key works as soon as the CLI has it) and every 2 s.
type spacesKeys struct {
	endpoint string // versitygw, as serve reaches it
	region   string
	rootID   string
	rootKey  string
	src      func() []dosim.SpacesKey
	log      *slog.Logger
	hc       *http.Client
	s3       *s3.Client

	mu sync.Mutex
	// policies is what each bucket's policy was last set to ("" none), so
	// a pass puts only what changed.
	policies map[string]string
}

func newSpacesKeys(endpoint, region, rootID, rootKey string, src func() []dosim.SpacesKey, log *slog.Logger) *spacesKeys {
	hc := &http.Client{Timeout: 10 * time.Second}
	return &spacesKeys{
		endpoint: strings.TrimSuffix(endpoint, "/"), region: region, rootID: rootID, rootKey: rootKey,
		src: src, log: log, hc: hc, policies: map[string]string{},
		s3: s3.New(s3.Options{
			BaseEndpoint: aws.String(endpoint), Region: region, UsePathStyle: true, HTTPClient: hc,
			Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{AccessKeyID: rootID, SecretAccessKey: rootKey}, nil
			}),
		}),
	}
}

// vgwAccount is versitygw's admin API account (auth.Account, XML).
type vgwAccount struct {
	Access string `xml:"Access"`
	Secret string `xml:"Secret"`
	Role   string `xml:"Role"`
}

// roleOf is the versitygw role a key's grants need.
func roleOf(k dosim.SpacesKey) string {
	for _, g := range k.Grants {
		if g.Permission == "fullaccess" {
			return "userplus"
		}
	}
	return "user"
}

// Sync makes versitygw's accounts and bucket policies match the
// simulator's keys. Errors are logged and retried at the next pass.
func (s *spacesKeys) Sync(ctx context.Context) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.sync(ctx); err != nil {
		s.log.Error("spaces keys: sync versitygw accounts", "err", err)
	}
}

func (s *spacesKeys) sync(ctx context.Context) error {
	keys := s.src()
	accounts, err := s.listAccounts(ctx)
	if err != nil {
		return err
	}
	want := map[string]dosim.SpacesKey{}
	for _, k := range keys {
		want[k.AccessKey] = k
	}
	have := map[string]vgwAccount{}
	for _, a := range accounts {
		have[a.Access] = a
	}
	var errs []error
	for access, a := range have {
		k, ok := want[access]
		if ok && k.Secret == a.Secret && roleOf(k) == a.Role {
			continue
		}
		if err := s.admin(ctx, "delete-user", url.Values{"access": {access}}, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(have, access)
		s.log.Info("spaces keys: versitygw account deleted", "access_key", access)
	}
	for access, k := range want {
		if _, ok := have[access]; ok {
			continue
		}
		body, err := xml.Marshal(struct {
			XMLName xml.Name `xml:"Account"`
			vgwAccount
		}{vgwAccount: vgwAccount{Access: access, Secret: k.Secret, Role: roleOf(k)}})
		if err != nil {
			return err
		}
		if err := s.admin(ctx, "create-user", nil, body); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("spaces keys: versitygw account created", "access_key", access, "name", k.Name, "role", roleOf(k))
	}
	if err := s.syncPolicies(ctx, keys); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Actions per DO permission: read lists and reads objects; readwrite also
// writes and deletes them (conditional writes are PutObject too).
var (
	readActions      = []string{"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"}
	readWriteActions = append(slices.Clone(readActions), "s3:PutObject", "s3:DeleteObject",
		"s3:ListBucketMultipartUploads", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload")
)

// bucketPolicy is the policy of one bucket for the keys granted on it, ""
// when none is.
func bucketPolicy(bucket string, keys []dosim.SpacesKey) string {
	principals := map[string][]string{} // permission → access keys
	for _, k := range keys {
		for _, g := range k.Grants {
			switch {
			case g.Permission == "fullaccess":
				principals["readwrite"] = append(principals["readwrite"], k.AccessKey)
			case g.Bucket == bucket && (g.Permission == "read" || g.Permission == "readwrite"):
				principals[g.Permission] = append(principals[g.Permission], k.AccessKey)
			}
		}
	}
	type statement struct {
		Sid       string              `json:"Sid"`
		Effect    string              `json:"Effect"`
		Principal map[string][]string `json:"Principal"`
		Action    []string            `json:"Action"`
		Resource  []string            `json:"Resource"`
	}
	var stmts []statement
	for _, perm := range []string{"read", "readwrite"} {
		p := principals[perm]
		if len(p) == 0 {
			continue
		}
		sort.Strings(p)
		p = slices.Compact(p)
		actions := readActions
		if perm == "readwrite" {
			actions = readWriteActions
		}
		stmts = append(stmts, statement{
			Sid: "dynia-sandbox-spaces-key-" + perm, Effect: "Allow", Principal: map[string][]string{"AWS": p},
			Action: actions, Resource: []string{"arn:aws:s3:::" + bucket, "arn:aws:s3:::" + bucket + "/*"},
		})
	}
	if len(stmts) == 0 {
		return ""
	}
	b, _ := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": stmts})
	return string(b)
}

func (s *spacesKeys) syncPolicies(ctx context.Context, keys []dosim.SpacesKey) error {
	out, err := s.s3.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return fmt.Errorf("list buckets: %w", err)
	}
	var errs []error
	for _, b := range out.Buckets {
		name := aws.ToString(b.Name)
		want := bucketPolicy(name, keys)
		if cur, ok := s.policies[name]; ok && cur == want {
			continue
		}
		if want == "" {
			_, err = s.s3.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(name)})
		} else {
			_, err = s.s3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(name), Policy: aws.String(want)})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bucket %s policy: %w", name, err))
			continue
		}
		s.policies[name] = want
		s.log.Info("spaces keys: bucket policy set", "bucket", name, "policy", want)
	}
	return errors.Join(errs...)
}

// listAccounts is versitygw's list-users (secrets included: versitygw's
// own file holds them too, 0600 in a 0700 directory).
func (s *spacesKeys) listAccounts(ctx context.Context) ([]vgwAccount, error) {
	var out struct {
		Accounts []vgwAccount `xml:"Accounts"`
	}
	b, err := s.adminBody(ctx, "list-users", nil, nil)
	if err != nil {
		return nil, err
	}
	if err := xml.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("versitygw list-users: %w", err)
	}
	return out.Accounts, nil
}

func (s *spacesKeys) admin(ctx context.Context, op string, q url.Values, body []byte) error {
	_, err := s.adminBody(ctx, op, q, body)
	return err
}

// adminBody calls one of versitygw's admin API operations (PATCH /<op>,
// SigV4-signed by the root account, as `versitygw admin` does); served on
// the S3 port when versitygw runs without --admin-port.
func (s *spacesKeys) adminBody(ctx context.Context, op string, q url.Values, body []byte) ([]byte, error) {
	u := s.endpoint + "/" + op
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", payload)
	creds := aws.Credentials{AccessKeyID: s.rootID, SecretAccessKey: s.rootKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, payload, "s3", s.region, time.Now()); err != nil {
		return nil, fmt.Errorf("versitygw %s: sign: %w", op, err)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("versitygw %s: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("versitygw %s: %w", op, err)
	}
	if resp.StatusCode >= 300 {
		// The body is an S3 error document (a code and a message): it
		// never echoes the account's secret.
		var e struct {
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		}
		_ = xml.Unmarshal(b, &e)
		return nil, fmt.Errorf("versitygw %s: %d %s %s", op, resp.StatusCode, e.Code, e.Message)
	}
	return b, nil
}
