// Package auth authenticates relay clients with HS256 JWTs and the HTTP API
// with a static bearer key.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrUnauthorized is wrapped by every authentication failure so callers can
// map them all to 401 with errors.Is, whatever the detailed reason.
var ErrUnauthorized = errors.New("unauthorized")

// leeway tolerates small clock differences between the token issuer and
// this server when checking exp and nbf.
const leeway = 5 * time.Second

// Verifier checks client JWTs signed with a shared HS256 secret. It is safe
// for concurrent use.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
}

// Claims are the checks a Verifier makes beyond the signature, exp and nbf.
type Claims struct {
	Issuer     string // set: iss must equal it
	Audience   string // set: aud must contain it
	RequireExp bool   // refuse tokens without exp: tokens that never expire
}

// NewVerifier returns a Verifier for secret. An empty secret yields a
// disabled Verifier that rejects every token, so a misconfigured server
// fails closed rather than accepting tokens signed with an empty key.
func NewVerifier(secret string, want Claims) *Verifier {
	opts := []jwt.ParserOption{
		// Pinning the algorithm blocks "alg: none" and algorithm
		// confusion; exp and nbf are checked by default.
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithLeeway(leeway),
	}
	if want.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(want.Issuer))
	}
	if want.Audience != "" {
		opts = append(opts, jwt.WithAudience(want.Audience))
	}
	if want.RequireExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	return &Verifier{secret: []byte(secret), parser: jwt.NewParser(opts...)}
}

// Enabled reports whether a secret is configured, i.e. whether the server
// should demand tokens at all.
func (v *Verifier) Enabled() bool { return len(v.secret) > 0 }

// User verifies token and returns its sub claim, the client's user ID. Every
// error wraps ErrUnauthorized.
func (v *Verifier) User(token string) (string, error) {
	if !v.Enabled() {
		return "", fmt.Errorf("%w: token auth is not configured", ErrUnauthorized)
	}
	if token == "" {
		return "", fmt.Errorf("%w: missing token", ErrUnauthorized)
	}
	var claims jwt.RegisteredClaims
	parsed, err := v.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) {
		return v.secret, nil
	})
	if err != nil {
		return "", fmt.Errorf("%w: %s", ErrUnauthorized, reason(parsed, err))
	}
	if claims.Subject == "" {
		return "", fmt.Errorf("%w: token has no sub", ErrUnauthorized)
	}
	return claims.Subject, nil
}

// reason turns a jwt error into a short message fit for a log line or a
// close frame; the library's own messages are long and nested.
func reason(tok *jwt.Token, err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case tok != nil && tok.Method != nil && tok.Method.Alg() != jwt.SigningMethodHS256.Alg():
		// Checked before the signature case because the library reports a
		// disallowed algorithm as an invalid signature.
		return fmt.Sprintf("token algorithm %q not accepted", tok.Method.Alg())
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "invalid token signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "token issuer not accepted"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "token audience not accepted"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token lacks a required claim (iss, aud or exp)"
	default:
		return "invalid token"
	}
}

// Mint returns an HS256 token for sub with iat set to now and exp to now+ttl.
// A ttl of 0 omits exp; a negative ttl yields an already-expired token,
// which tests find handy. It serves tests and the benchmark tool; production
// tokens come from the application's own identity service.
func Mint(secret, sub string, ttl time.Duration) (string, error) {
	if secret == "" {
		return "", errors.New("mint token: empty secret")
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Subject:  sub,
		IssuedAt: jwt.NewNumericDate(now),
	}
	if ttl != 0 {
		claims.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}

// TokenFromRequest extracts a client token from the Authorization: Bearer
// header or, failing that, the token query parameter. The query fallback
// exists because browsers cannot set headers on a WebSocket handshake.
func TokenFromRequest(r *http.Request) string {
	if t := bearer(r); t != "" {
		return t
	}
	return r.URL.Query().Get("token")
}

// bearer returns the credentials of an "Authorization: Bearer" header, or ""
// if there is none. The scheme is case-insensitive per RFC 9110.
func bearer(r *http.Request) string {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}

// APIKey guards the server-side HTTP API with a single static key. The zero
// value is disabled.
type APIKey struct {
	// sum is the SHA-256 of the key. Comparing fixed-size digests keeps
	// the comparison constant-time even when the lengths differ, which
	// ConstantTimeCompare alone does not.
	sum     [sha256.Size]byte
	enabled bool
}

// NewAPIKey returns a checker for key; an empty key disables the check.
func NewAPIKey(key string) APIKey {
	if key == "" {
		return APIKey{}
	}
	return APIKey{sum: sha256.Sum256([]byte(key)), enabled: true}
}

// Check reports whether r may use the API: always when no key is configured,
// otherwise only with "Authorization: Bearer <key>". The query string is not
// accepted, since it tends to end up in access logs.
func (k APIKey) Check(r *http.Request) bool {
	if !k.enabled {
		return true
	}
	got := bearer(r)
	if got == "" {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], k.sum[:]) == 1
}
