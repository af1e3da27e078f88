package protocol_test

import (
	"strings"
	"testing"

	"github.com/relay/relay/internal/protocol"
)

func TestParseRooms(t *testing.T) {
	tests := []struct {
		list    []string
		match   []string
		nomatch []string
		wantErr bool
	}{
		{list: nil, nomatch: []string{"lobby", "a"}},
		{list: []string{"*"}, match: []string{"lobby", "x:y"}},
		{list: []string{"team-42", "support-*"}, match: []string{"team-42", "support-", "support-9"}, nomatch: []string{"team-4", "team-420", "support"}},
		{list: []string{"a b"}, wantErr: true},
		{list: []string{"a*b"}, wantErr: true},
		{list: []string{"**"}, wantErr: true},
		{list: []string{""}, wantErr: true},
		{list: []string{strings.Repeat("a", 65)}, wantErr: true},
	}
	for _, tt := range tests {
		r, err := protocol.ParseRooms(tt.list)
		if (err != nil) != tt.wantErr {
			t.Fatalf("ParseRooms(%q) err = %v, want error %v", tt.list, err, tt.wantErr)
		}
		for _, m := range tt.match {
			if !r.Match(m) {
				t.Errorf("%q does not match %q", tt.list, m)
			}
		}
		for _, m := range tt.nomatch {
			if r.Match(m) {
				t.Errorf("%q matches %q", tt.list, m)
			}
		}
	}
}

func TestDecodeWhoAndRoomToken(t *testing.T) {
	tests := []struct {
		in       string
		want     protocol.ClientFrame
		wantCode protocol.ErrorCode
	}{
		{in: `{"type":"who","room":"ops"}`, want: protocol.ClientFrame{Type: "who", Room: "ops"}},
		{in: `{"type":"who"}`, wantCode: protocol.ErrBadRoom},
		{in: `{"type":"join","room":"vip","token":"abc"}`, want: protocol.ClientFrame{Type: "join", Room: "vip", Token: "abc"}},
		{in: `{"type":"join","room":"vip","token":""}`, wantCode: protocol.ErrBadJSON},
		{in: `{"type":"leave","room":"vip","token":"abc"}`, wantCode: protocol.ErrBadJSON},
		{in: `{"type":"join","room":"vip","token":7}`, wantCode: protocol.ErrBadJSON},
		{in: `{"type":"join","room":"vip","token":"` + strings.Repeat("a", protocol.MaxTokenBytes+1) + `"}`, wantCode: protocol.ErrBadJSON},
	}
	for _, tt := range tests {
		got, perr := protocol.DecodeClient([]byte(tt.in))
		if tt.wantCode != "" {
			if perr == nil || perr.Code != tt.wantCode {
				t.Errorf("DecodeClient(%.60s) = %v, want %s", tt.in, perr, tt.wantCode)
			}
			continue
		}
		if perr != nil || got.Type != tt.want.Type || got.Room != tt.want.Room || got.Token != tt.want.Token {
			t.Errorf("DecodeClient(%.60s) = %+v, %v; want %+v", tt.in, got, perr, tt.want)
		}
	}
}
