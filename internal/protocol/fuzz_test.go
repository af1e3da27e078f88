package protocol_test

import (
	"encoding/json"
	"net/url"
	"testing"
	"unicode/utf8"

	"github.com/relay/relay/internal/protocol"
)

// decodeErrorCodes are the only codes DecodeClient may return.
var decodeErrorCodes = map[protocol.ErrorCode]bool{
	protocol.ErrBadJSON:     true,
	protocol.ErrUnknownType: true,
	protocol.ErrBadMessage:  true,
	protocol.ErrBadRoom:     true,
}

func FuzzDecodeClient(f *testing.F) {
	for _, seed := range []string{
		"hello world",
		"  \t\r\n leading whitespace",
		`say "hi" <b>&</b> 世界 🎉`,
		`{"type":"message","data":"hi"}`,
		`{"type":"message","room":"team:a.b-c_d","data":{"a":[1,true,null,"x"]}}`,
		`{"type":"message","data":null}`,
		`{"type":"message"}`,
		`{"type":"join","room":"dev"}`,
		`{"type":"leave","room":"lobby"}`,
		`{"type":"ping","extra":1}`,
		`{"type":"join","room":5}`,
		`{"type":"join","room":"a/b"}`,
		`{"type":"shout"}`,
		`{}`,
		`{"type":"message","data":"trunc`,
		"",
		" \n\t",
		"{\"type\":\"message\",\"data\":\"\xff\"}",
		"\xff\xfe plain",
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, in []byte) {
		orig := string(in)
		fr, err := protocol.DecodeClient(in)
		if string(in) != orig {
			t.Fatalf("DecodeClient modified its input")
		}
		if err != nil {
			if !decodeErrorCodes[err.Code] {
				t.Fatalf("DecodeClient(%q): unexpected code %q", in, err.Code)
			}
			if err.Text == "" {
				t.Fatalf("DecodeClient(%q): %s with empty text", in, err.Code)
			}
			// Every error must be reportable to the client.
			var back protocol.ErrorFrame
			if jerr := json.Unmarshal(protocol.EncodeError(err).Payload(), &back); jerr != nil || back.Code != err.Code {
				t.Fatalf("DecodeClient(%q): error frame does not round-trip: %v", in, jerr)
			}
			return
		}
		switch fr.Type {
		case protocol.TypePing:
		case protocol.TypeJoin, protocol.TypeLeave:
			if !protocol.ValidRoom(fr.Room) {
				t.Fatalf("DecodeClient(%q): %s with invalid room %q", in, fr.Type, fr.Room)
			}
			if fr.Data != nil {
				t.Fatalf("DecodeClient(%q): %s with data %q", in, fr.Type, fr.Data)
			}
		case protocol.TypeMessage:
			if !protocol.ValidRoom(fr.Room) {
				t.Fatalf("DecodeClient(%q): message with invalid room %q", in, fr.Room)
			}
			if !json.Valid(fr.Data) {
				t.Fatalf("DecodeClient(%q): message data %q is not valid JSON", in, fr.Data)
			}
			if !utf8.Valid(fr.Data) {
				t.Fatalf("DecodeClient(%q): message data %q is not valid UTF-8: browsers would drop the connection", in, fr.Data)
			}
			if string(fr.Data) == "null" {
				t.Fatalf("DecodeClient(%q): message with null data", in)
			}
			// The hub encodes exactly this; it must not fail.
			if _, eerr := protocol.Encode(protocol.Chat{Type: fr.Type, Room: fr.Room, Data: fr.Data}); eerr != nil {
				t.Fatalf("DecodeClient(%q): data %q does not re-encode: %v", in, fr.Data, eerr)
			}
		default:
			t.Fatalf("DecodeClient(%q): unexpected type %q", in, fr.Type)
		}

		// Plain text (first non-whitespace byte not '{') is a lobby message
		// carrying the text; exactly, when the text is valid UTF-8.
		if first := firstNonSpace(in); first >= 0 && in[first] != '{' {
			if fr.Type != protocol.TypeMessage || fr.Room != protocol.Lobby {
				t.Fatalf("DecodeClient(%q): plain text decoded as %s to %q", in, fr.Type, fr.Room)
			}
			var s string
			if jerr := json.Unmarshal(fr.Data, &s); jerr != nil {
				t.Fatalf("DecodeClient(%q): plain text data %q is not a JSON string", in, fr.Data)
			}
			if s != string(in) {
				t.Fatalf("DecodeClient(%q): plain text changed to %q", in, s)
			}
		}
	})
}

func firstNonSpace(b []byte) int {
	for i, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return i
		}
	}
	return -1
}

// FuzzParseResume: the upgrade query comes from anyone. A list it accepts
// names only valid streams, each once, within the room limit; one it
// refuses says why.
func FuzzParseResume(f *testing.F) {
	for _, seed := range []string{
		"epoch=e&since=*:12,@:3,lobby:44,ops:17", "epoch=e&since=team%3Aa:5", "since=lobby:1", "epoch=e",
		"epoch=e&since=lobby", "epoch=e&since=lobby:x", "epoch=e&since=a:1,a:2", "epoch=e&since=bad%20room:1",
		"epoch=e&since=:1", "epoch=e&since=lobby:18446744073709551616", "", "name=x&token=y",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r, perr := protocol.ParseResume(q)
		if perr != nil {
			if perr.Error() == "" {
				t.Fatalf("ParseResume(%q): an error with no text", raw)
			}
			return
		}
		if r.Since == nil {
			return // a fresh connection
		}
		if r.Epoch == "" || len(r.Rooms)+1 > protocol.MaxRooms {
			t.Fatalf("ParseResume(%q) accepted %+v", raw, r)
		}
		for name := range r.Since {
			if name != protocol.StreamAll && name != protocol.StreamUser && !protocol.ValidRoom(name) {
				t.Fatalf("ParseResume(%q) accepted stream %q", raw, name)
			}
		}
	})
}
