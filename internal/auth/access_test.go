package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func mintWith(t *testing.T, sub string, ttl time.Duration, extra map[string]any) string {
	t.Helper()
	s, err := MintWith(secret, sub, ttl, extra)
	if err != nil {
		t.Fatalf("MintWith: %v", err)
	}
	return s
}

func TestIdentityAccess(t *testing.T) {
	v := NewVerifier(secret, Claims{})
	tests := []struct {
		name    string
		extra   map[string]any
		join    map[string]bool
		send    map[string]bool
		wantErr string
	}{
		{"no claims: everything", nil,
			map[string]bool{"lobby": true, "ops": true, "support-1": true},
			map[string]bool{"lobby": true, "ops": true}, ""},
		{"rooms and prefixes", map[string]any{"rooms": []string{"team-42", "support-*"}},
			map[string]bool{"lobby": true, "team-42": true, "team-43": false, "support-7": true, "support": false},
			map[string]bool{"team-42": true, "ops": true}, ""},
		{"empty rooms: lobby only", map[string]any{"rooms": []string{}},
			map[string]bool{"lobby": true, "ops": false}, nil, ""},
		{"send restricted", map[string]any{"rooms": []string{"*"}, "send": []string{"staff-*"}},
			map[string]bool{"news": true},
			map[string]bool{"news": false, "staff-x": true, "lobby": false}, ""},
		{"bad pattern", map[string]any{"rooms": []string{"a b"}}, nil, nil, "rooms claim"},
		{"star inside", map[string]any{"rooms": []string{"a*b"}}, nil, nil, "rooms claim"},
		{"empty send: posts nowhere", map[string]any{"send": []string{}},
			map[string]bool{"lobby": true, "ops": true},
			map[string]bool{"lobby": false, "ops": false}, ""},
		{"wrong type", map[string]any{"rooms": "ops"}, nil, nil, "rooms claim: must be an array"},
		{"rooms not strings", map[string]any{"rooms": []any{"ops", 7}}, nil, nil, "rooms claim: must be an array"},
		{"send wrong type", map[string]any{"send": map[string]any{"ops": true}}, nil, nil, "send claim: must be an array"},
		// A Go backend that appends matches to a nil slice signs null when
		// nothing matched: that must not grant every room.
		{"null rooms", map[string]any{"rooms": nil}, nil, nil, "rooms claim is null"},
		{"null send", map[string]any{"rooms": []string{"ops"}, "send": nil}, nil, nil, "send claim is null"},
		{"null pattern", map[string]any{"rooms": []any{nil}}, nil, nil, "rooms claim: must be an array"},
		{"room token refused for a connection", map[string]any{"room": "ops"}, nil, nil, "room token cannot open"},
		{"null room refused for a connection", map[string]any{"room": nil}, nil, nil, "room token cannot open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Identity(mintWith(t, "alice", time.Hour, tt.extra))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || id.User != "alice" {
				t.Fatalf("Identity = %+v, %v", id, err)
			}
			for room, want := range tt.join {
				if got := id.Access.MayJoin(room); got != want {
					t.Errorf("MayJoin(%q) = %v, want %v", room, got, want)
				}
			}
			for room, want := range tt.send {
				if got := id.Access.MaySend(room); got != want {
					t.Errorf("MaySend(%q) = %v, want %v", room, got, want)
				}
			}
		})
	}
}

func TestRoomToken(t *testing.T) {
	v := NewVerifier(secret, Claims{})
	now := time.Now()
	tests := []struct {
		name    string
		token   string
		wantErr string
	}{
		{"valid", mintWith(t, "alice", time.Minute, map[string]any{"room": "vip"}), ""},
		{"expired", mintWith(t, "alice", -time.Minute, map[string]any{"room": "vip"}), "token expired"},
		{"forged", sign(t, jwt.SigningMethodHS256, []byte("not-the-secret"), jwt.MapClaims{"sub": "alice", "room": "vip"}), "invalid token signature"},
		{"other user", mintWith(t, "bob", time.Minute, map[string]any{"room": "vip"}), "another user"},
		{"other room", mintWith(t, "alice", time.Minute, map[string]any{"room": "ops"}), "another room"},
		{"connection token", mintWith(t, "alice", time.Minute, nil), "not a room token"},
		{"null room", mintWith(t, "alice", time.Minute, map[string]any{"room": nil}), "room claim: must be a string"},
		{"room not a string", mintWith(t, "alice", time.Minute, map[string]any{"room": []string{"vip"}}), "room claim: must be a string"},
		{"garbage", "x.y.z", "malformed token"},
		{"not yet", sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "alice", "room": "vip", "nbf": now.Add(time.Hour).Unix()}), "not valid yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.RoomToken(tt.token, "alice", "vip")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("RoomToken: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if err := NewVerifier("", Claims{}).RoomToken("x", "alice", "vip"); err == nil {
		t.Fatal("room token accepted without a secret")
	}
}
