// Package auth authenticates relay clients with HS256 JWTs and the HTTP API
// with a static bearer key.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/relay/relay/internal/protocol"
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
	id, err := v.Identity(token)
	return id.User, err
}

// Identity is who a connection is and what it may do.
type Identity struct {
	User   string
	Access Access
}

// claims are the claims relay reads from a token. rooms, send and room are
// kept raw so that an absent claim (no restriction; not a room token)
// differs from one present with null, which is refused: Go's encoding/json
// writes a nil slice as null, so a backend that appends the rooms it found
// to a nil list would otherwise grant every room when it found none.
type claims struct {
	jwt.RegisteredClaims
	Rooms json.RawMessage `json:"rooms,omitempty"`
	Send  json.RawMessage `json:"send,omitempty"`
	Room  json.RawMessage `json:"room,omitempty"`
}

// patterns parses the rooms or send claim raw, named name: nil when the
// claim is absent, an error when it is null or not an array of valid
// patterns. An empty array is no pattern at all: it matches no room.
func patterns(name string, raw json.RawMessage) (*protocol.Rooms, error) {
	if raw == nil {
		return nil, nil
	}
	if string(raw) == "null" {
		return nil, fmt.Errorf("%w: %s claim is null: send an array of room patterns ([] for none) or leave it out", ErrUnauthorized, name)
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil || hasNull(raw) {
		return nil, fmt.Errorf("%w: %s claim: must be an array of room patterns (strings)", ErrUnauthorized, name)
	}
	r, err := protocol.ParseRooms(list)
	if err != nil {
		return nil, fmt.Errorf("%w: %s claim: %v", ErrUnauthorized, name, err)
	}
	return &r, nil
}

// hasNull reports whether the JSON array raw has a null element, which
// json.Unmarshal would turn into "" without complaint.
func hasNull(raw json.RawMessage) bool {
	var elems []json.RawMessage
	if json.Unmarshal(raw, &elems) != nil {
		return false
	}
	for _, e := range elems {
		if string(e) == "null" {
			return true
		}
	}
	return false
}

// Identity verifies a connection token: its sub is the user, its rooms and
// send claims (arrays of patterns, see protocol.ParseRooms) what the user
// may join and send to. An absent claim does not restrict; an empty array
// grants nothing (rooms: lobby only; send: nowhere); null or anything but
// an array of valid patterns is refused. A room token (one with a room
// claim, even null) does not open a connection: it would otherwise grant
// every room. Every error wraps ErrUnauthorized.
func (v *Verifier) Identity(token string) (Identity, error) {
	c, err := v.parse(token)
	if err != nil {
		return Identity{}, err
	}
	if c.Room != nil {
		return Identity{}, fmt.Errorf("%w: a room token cannot open a connection", ErrUnauthorized)
	}
	join, err := patterns("rooms", c.Rooms)
	if err != nil {
		return Identity{}, err
	}
	send, err := patterns("send", c.Send)
	if err != nil {
		return Identity{}, err
	}
	a := Unrestricted
	if join != nil {
		a.join = *join
	}
	a.send = send
	return Identity{User: c.Subject, Access: a}, nil
}

// ErrForbidden is wrapped by every refused room token.
var ErrForbidden = errors.New("forbidden")

// RoomToken verifies a room token that user presents to join room: signed
// like a connection token, with sub user and a room claim naming room.
// Every error wraps ErrForbidden.
func (v *Verifier) RoomToken(token, user, room string) error {
	if !v.Enabled() {
		return fmt.Errorf("%w: room tokens need RELAY_JWT_SECRET", ErrForbidden)
	}
	c, err := v.parse(token)
	if err != nil {
		var te *tokenError
		errors.As(err, &te)
		return fmt.Errorf("%w: room token: %s", ErrForbidden, te.reason)
	}
	if c.Room == nil {
		return fmt.Errorf("%w: not a room token (no room claim)", ErrForbidden)
	}
	var claimed string
	if string(c.Room) == "null" || json.Unmarshal(c.Room, &claimed) != nil {
		return fmt.Errorf("%w: room claim: must be a string, the room's name", ErrForbidden)
	}
	switch {
	case claimed != room:
		return fmt.Errorf("%w: the room token is for another room", ErrForbidden)
	case c.Subject != user:
		return fmt.Errorf("%w: the room token is for another user", ErrForbidden)
	}
	return nil
}

// tokenError is why a token was refused, in a few words. It wraps
// ErrUnauthorized.
type tokenError struct{ reason string }

func (e *tokenError) Error() string { return ErrUnauthorized.Error() + ": " + e.reason }
func (e *tokenError) Unwrap() error { return ErrUnauthorized }

// parse verifies token's signature and registered claims. Every error is a
// *tokenError.
func (v *Verifier) parse(token string) (*claims, error) {
	if !v.Enabled() {
		return nil, &tokenError{"token auth is not configured"}
	}
	if token == "" {
		return nil, &tokenError{"missing token"}
	}
	var c claims
	parsed, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) {
		return v.secret, nil
	})
	if err != nil {
		return nil, &tokenError{reason(parsed, err)}
	}
	if c.Subject == "" {
		return nil, &tokenError{"token has no sub"}
	}
	return &c, nil
}

// Access is what a connection may do: join the rooms its patterns match
// (lobby always), and send to the rooms its send patterns match, or, with
// no send claim, to every room it is in. It implements hub.Access.
type Access struct {
	join protocol.Rooms
	send *protocol.Rooms // nil: no restriction beyond membership
}

// Unrestricted may join and send to every room: a token without rooms and
// send claims, or guests with RELAY_GUEST_ROOMS=*.
var Unrestricted = Access{join: protocol.AnyRoom}

// GuestAccess is what guests may do: join the rooms of RELAY_GUEST_ROOMS
// and send wherever they are.
func GuestAccess(rooms protocol.Rooms) Access { return Access{join: rooms} }

// MayJoin reports whether the connection may join room by itself (without
// a room token).
func (a Access) MayJoin(room string) bool { return room == protocol.Lobby || a.join.Match(room) }

// MaySend reports whether the connection may send chat to room, given that
// it is in it.
func (a Access) MaySend(room string) bool { return a.send == nil || a.send.Match(room) }

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

// MintWith is Mint with extra claims (rooms, send, room), for tests and the
// benchmark tool.
func MintWith(secret, sub string, ttl time.Duration, extra map[string]any) (string, error) {
	if secret == "" {
		return "", errors.New("mint token: empty secret")
	}
	now := time.Now()
	c := jwt.MapClaims{"sub": sub, "iat": now.Unix()}
	if ttl != 0 {
		c["exp"] = now.Add(ttl).Unix()
	}
	for k, v := range extra {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
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
