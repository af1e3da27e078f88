package protocol_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/protocol"
)

// ---------------------------------------------------------------------------
// DecodeClient

func TestDecodeClient(t *testing.T) {
	t.Parallel()

	room64 := strings.Repeat("r", 64)
	room65 := strings.Repeat("r", 65)

	tests := []struct {
		name string
		in   string

		// On success:
		wantType string
		wantRoom string
		wantData string // exact raw JSON of Data; "" means Data must be empty
		plain    bool   // Data must be a JSON string equal to in, byte for byte

		// On failure:
		wantCode ErrorCodeOrNone
		wantText string // substring of Error.Text
	}{
		// Plain text: the first non-whitespace byte is not '{'.
		{name: "plain/word", in: "hello", wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/sentence", in: "hello, world!", wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/leading spaces kept", in: "   hi", wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/leading tab CR LF kept", in: "\t\r\n hi", wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/trailing newline kept", in: "hi\n", wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/unicode", in: "héllo 世界 🎉 你好", wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/quotes and angle brackets", in: `say "hi" <b>&amp;</b> \ done`, wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/json array is text", in: `[1,2,3]`, wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/json string is text", in: `"quoted"`, wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/null is text", in: `null`, wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/number is text", in: `42`, wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/brace later is text", in: `x{"type":"join","room":"a"}`, wantType: "message", wantRoom: "lobby", plain: true},
		{name: "plain/control chars", in: "a\x00b\x1fc", wantType: "message", wantRoom: "lobby", plain: true},
		{name: "invalid utf-8/plain", in: "caf\xe9", wantCode: ok(protocol.ErrBadMessage), wantText: "UTF-8"},
		{name: "invalid utf-8/in data", in: "{\"type\":\"message\",\"data\":\"\xff\"}", wantCode: ok(protocol.ErrBadMessage), wantText: "UTF-8"},

		// Message envelopes.
		{name: "message/default room lobby", in: `{"type":"message","data":"hi"}`, wantType: "message", wantRoom: "lobby", wantData: `"hi"`},
		{name: "message/explicit room", in: `{"type":"message","room":"dev","data":"hi"}`, wantType: "message", wantRoom: "dev", wantData: `"hi"`},
		{name: "message/room null means lobby", in: `{"type":"message","room":null,"data":"hi"}`, wantType: "message", wantRoom: "lobby", wantData: `"hi"`},
		{name: "message/data string", in: `{"type":"message","room":"r","data":"a \"b\" <c>"}`, wantType: "message", wantRoom: "r", wantData: `"a \"b\" <c>"`},
		{name: "message/data empty string", in: `{"type":"message","data":""}`, wantType: "message", wantRoom: "lobby", wantData: `""`},
		{name: "message/data number", in: `{"type":"message","data":-12.5e3}`, wantType: "message", wantRoom: "lobby", wantData: `-12.5e3`},
		{name: "message/data zero", in: `{"type":"message","data":0}`, wantType: "message", wantRoom: "lobby", wantData: `0`},
		{name: "message/data object", in: `{"type":"message","data":{"a":1,"b":[true,null]}}`, wantType: "message", wantRoom: "lobby", wantData: `{"a":1,"b":[true,null]}`},
		{name: "message/data empty object", in: `{"type":"message","data":{}}`, wantType: "message", wantRoom: "lobby", wantData: `{}`},
		{name: "message/data array", in: `{"type":"message","data":[1,"two",{"three":3}]}`, wantType: "message", wantRoom: "lobby", wantData: `[1,"two",{"three":3}]`},
		{name: "message/data empty array", in: `{"type":"message","data":[]}`, wantType: "message", wantRoom: "lobby", wantData: `[]`},
		{name: "message/data true", in: `{"type":"message","data":true}`, wantType: "message", wantRoom: "lobby", wantData: `true`},
		{name: "message/data false", in: `{"type":"message","data":false}`, wantType: "message", wantRoom: "lobby", wantData: `false`},
		{name: "message/field order free", in: `{"data":1,"room":"r","type":"message"}`, wantType: "message", wantRoom: "r", wantData: `1`},
		{name: "message/whitespace around envelope", in: " \r\n\t{ \"type\" : \"message\" , \"data\" : 1 } \n", wantType: "message", wantRoom: "lobby", wantData: `1`},
		{name: "message/unknown fields ignored", in: `{"type":"message","data":1,"extra":{"x":[1,2]},"id":"abc","ts":5}`, wantType: "message", wantRoom: "lobby", wantData: `1`},
		{name: "message/room with all allowed punctuation", in: `{"type":"message","room":"team:a.b-c_d","data":1}`, wantType: "message", wantRoom: "team:a.b-c_d", wantData: `1`},
		{name: "message/room 64 chars", in: `{"type":"message","room":"` + room64 + `","data":1}`, wantType: "message", wantRoom: room64, wantData: `1`},

		// Join, leave, ping.
		{name: "join", in: `{"type":"join","room":"dev"}`, wantType: "join", wantRoom: "dev"},
		{name: "join/data ignored", in: `{"type":"join","room":"dev","data":{"x":1}}`, wantType: "join", wantRoom: "dev"},
		{name: "join/punctuated room", in: `{"type":"join","room":"a:b.c-d_e"}`, wantType: "join", wantRoom: "a:b.c-d_e"},
		{name: "join/unknown fields ignored", in: `{"type":"join","room":"dev","foo":"bar","n":null}`, wantType: "join", wantRoom: "dev"},
		{name: "leave", in: `{"type":"leave","room":"dev"}`, wantType: "leave", wantRoom: "dev"},
		{name: "leave/lobby", in: `{"type":"leave","room":"lobby"}`, wantType: "leave", wantRoom: "lobby"},
		{name: "ping", in: `{"type":"ping"}`, wantType: "ping"},
		{name: "ping/leading whitespace", in: "\n\t {\"type\":\"ping\"}", wantType: "ping"},
		{name: "ping/unknown fields ignored", in: `{"type":"ping","t":12345,"x":{"y":[]}}`, wantType: "ping"},

		// Malformed JSON.
		{name: "bad json/brace then garbage", in: `{garbage`, wantCode: ok(protocol.ErrBadJSON), wantText: "malformed JSON"},
		{name: "bad json/lone brace", in: `{`, wantCode: ok(protocol.ErrBadJSON), wantText: "malformed JSON"},
		{name: "bad json/truncated", in: `{"type":"message","data":"hel`, wantCode: ok(protocol.ErrBadJSON), wantText: "malformed JSON"},
		{name: "bad json/truncated after value", in: `{"type":"ping"`, wantCode: ok(protocol.ErrBadJSON), wantText: "malformed JSON"},
		{name: "bad json/trailing data", in: `{"type":"ping"}}`, wantCode: ok(protocol.ErrBadJSON), wantText: "malformed JSON"},
		{name: "bad json/two envelopes", in: `{"type":"ping"}{"type":"ping"}`, wantCode: ok(protocol.ErrBadJSON), wantText: "malformed JSON"},
		{name: "bad json/single quotes", in: `{'type':'ping'}`, wantCode: ok(protocol.ErrBadJSON), wantText: "malformed JSON"},
		{name: "bad json/trailing comma", in: `{"type":"ping",}`, wantCode: ok(protocol.ErrBadJSON), wantText: "malformed JSON"},

		// Known field of the wrong type.
		{name: "wrong type/room number", in: `{"type":"join","room":5}`, wantCode: ok(protocol.ErrBadJSON), wantText: `"room"`},
		{name: "wrong type/room on message", in: `{"type":"message","room":5,"data":1}`, wantCode: ok(protocol.ErrBadJSON), wantText: `"room"`},
		{name: "wrong type/room bool", in: `{"type":"leave","room":true}`, wantCode: ok(protocol.ErrBadJSON), wantText: `"room"`},
		{name: "wrong type/room object", in: `{"type":"join","room":{"name":"a"}}`, wantCode: ok(protocol.ErrBadJSON), wantText: `"room"`},
		{name: "wrong type/type number", in: `{"type":5}`, wantCode: ok(protocol.ErrBadJSON), wantText: `"type"`},
		{name: "wrong type/type array", in: `{"type":["ping"]}`, wantCode: ok(protocol.ErrBadJSON), wantText: `"type"`},

		// Unknown or missing type.
		{name: "unknown type", in: `{"type":"shout","data":1}`, wantCode: ok(protocol.ErrUnknownType), wantText: "shout"},
		{name: "unknown type/case matters", in: `{"type":"MESSAGE","data":1}`, wantCode: ok(protocol.ErrUnknownType)},
		{name: "unknown type/long name", in: `{"type":"` + strings.Repeat("x", 1000) + `"}`, wantCode: ok(protocol.ErrUnknownType)},
		{name: "missing type/empty object", in: `{}`, wantCode: ok(protocol.ErrUnknownType), wantText: "missing type"},
		{name: "missing type/data only", in: `{"data":"hi"}`, wantCode: ok(protocol.ErrUnknownType), wantText: "missing type"},
		{name: "missing type/empty string", in: `{"type":"","data":"hi"}`, wantCode: ok(protocol.ErrUnknownType), wantText: "missing type"},
		{name: "missing type/null", in: `{"type":null,"data":"hi"}`, wantCode: ok(protocol.ErrUnknownType), wantText: "missing type"},

		// Message without data.
		{name: "bad message/no data", in: `{"type":"message"}`, wantCode: ok(protocol.ErrBadMessage)},
		{name: "bad message/no data with room", in: `{"type":"message","room":"dev"}`, wantCode: ok(protocol.ErrBadMessage)},
		{name: "bad message/data null", in: `{"type":"message","data":null}`, wantCode: ok(protocol.ErrBadMessage)},
		{name: "bad message/data null spaced", in: `{"type":"message","data": null }`, wantCode: ok(protocol.ErrBadMessage)},

		// Empty frames.
		{name: "bad message/empty frame", in: ``, wantCode: ok(protocol.ErrBadMessage)},
		{name: "bad message/spaces", in: `    `, wantCode: ok(protocol.ErrBadMessage)},
		{name: "bad message/mixed whitespace", in: " \t\r\n \n", wantCode: ok(protocol.ErrBadMessage)},

		// Bad room names.
		{name: "bad room/join without room", in: `{"type":"join"}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/leave without room", in: `{"type":"leave"}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/join room null", in: `{"type":"join","room":null}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/join empty", in: `{"type":"join","room":""}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/message empty", in: `{"type":"message","room":"","data":1}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/leave empty", in: `{"type":"leave","room":""}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/65 chars", in: `{"type":"join","room":"` + room65 + `"}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/message 65 chars", in: `{"type":"message","room":"` + room65 + `","data":1}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/space", in: `{"type":"join","room":"my room"}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/slash", in: `{"type":"join","room":"a/b"}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/message slash", in: `{"type":"message","room":"a/b","data":1}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/leave slash", in: `{"type":"leave","room":"../x"}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/unicode", in: `{"type":"join","room":"café"}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/unicode escape", in: `{"type":"join","room":"caf\u00e9"}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/wildcard", in: `{"type":"join","room":"*"}`, wantCode: ok(protocol.ErrBadRoom)},
		{name: "bad room/newline", in: `{"type":"join","room":"a\nb"}`, wantCode: ok(protocol.ErrBadRoom)},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := protocol.DecodeClient([]byte(tt.in))
			if tt.wantCode.set {
				if err == nil {
					t.Fatalf("DecodeClient(%q) = %+v, nil; want error %s", tt.in, f, tt.wantCode.code)
				}
				if err.Code != tt.wantCode.code {
					t.Errorf("DecodeClient(%q) code = %q (%s); want %q", tt.in, err.Code, err.Text, tt.wantCode.code)
				}
				if err.Text == "" {
					t.Errorf("DecodeClient(%q): empty error text", tt.in)
				}
				if !strings.Contains(err.Text, tt.wantText) {
					t.Errorf("DecodeClient(%q) text = %q; want it to contain %q", tt.in, err.Text, tt.wantText)
				}
				if got, want := err.Error(), string(err.Code)+": "+err.Text; got != want {
					t.Errorf("Error() = %q; want %q", got, want)
				}
				if f.Type != "" || f.Room != "" || f.Data != nil {
					t.Errorf("DecodeClient(%q) returned a frame %+v alongside error", tt.in, f)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeClient(%q) error = %v; want %s frame", tt.in, err, tt.wantType)
			}
			if f.Type != tt.wantType {
				t.Errorf("Type = %q; want %q", f.Type, tt.wantType)
			}
			if tt.wantType != protocol.TypePing && f.Room != tt.wantRoom {
				t.Errorf("Room = %q; want %q", f.Room, tt.wantRoom)
			}
			switch {
			case tt.plain:
				if !json.Valid(f.Data) {
					t.Fatalf("Data %q is not valid JSON", f.Data)
				}
				var s string
				if err := json.Unmarshal(f.Data, &s); err != nil {
					t.Fatalf("Data %q is not a JSON string: %v", f.Data, err)
				}
				if s != tt.in {
					t.Errorf("plain text changed: got %q; want %q", s, tt.in)
				}
			case tt.wantData != "":
				if string(f.Data) != tt.wantData {
					t.Errorf("Data = %s; want %s", f.Data, tt.wantData)
				}
			default:
				if f.Data != nil {
					t.Errorf("Data = %s; want none for %s", f.Data, f.Type)
				}
			}
		})
	}
}

// ErrorCodeOrNone distinguishes "no error expected" from any code.
type ErrorCodeOrNone struct {
	code protocol.ErrorCode
	set  bool
}

func ok(c protocol.ErrorCode) ErrorCodeOrNone { return ErrorCodeOrNone{c, true} }

// The decoded Data must not alias the caller's buffer: the server reuses
// nothing today, but the frame outlives the read and is fanned out.
func TestDecodeClientDataDoesNotAliasInput(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{"type":"message","data":"abc"}`, "plain text"} {
		buf := []byte(in)
		f, err := protocol.DecodeClient(buf)
		if err != nil {
			t.Fatalf("DecodeClient(%q): %v", in, err)
		}
		want := string(f.Data)
		for i := range buf {
			buf[i] = 'X'
		}
		if string(f.Data) != want {
			t.Errorf("DecodeClient(%q): Data changed to %q after the input was overwritten", in, f.Data)
		}
	}
}

// ---------------------------------------------------------------------------
// ValidRoom / ValidName

func TestValidRoom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"", false},
		{"a", true},
		{"lobby", true},
		{"Z", true},
		{"0", true},
		{"_", true},
		{"-", true},
		{".", true},
		{":", true},
		{"team:dev.ops-1_a", true},
		{"ABCxyz019", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{strings.Repeat(":", 64), true},
		{strings.Repeat("a", 1000), false},
		{"a b", false},
		{" a", false},
		{"a\t", false},
		{"a/b", false},
		{"a\\b", false},
		{"a*b", false},
		{"a@b", false},
		{"a+b", false},
		{"a#b", false},
		{"a\x00b", false},
		{"café", false},
		{"日本", false},
		{"é", false},
		{"a\xffb", false},
		// Multi-byte: 32 two-byte runes are 64 bytes but not allowed anyway.
		{strings.Repeat("é", 32), false},
	}
	for _, tt := range tests {
		if got := protocol.ValidRoom(tt.in); got != tt.want {
			t.Errorf("ValidRoom(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
	// Every single byte: exactly the documented set is allowed.
	for c := 0; c < 256; c++ {
		s := string([]byte{byte(c)})
		want := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '.' || c == ':'
		if got := protocol.ValidRoom(s); got != want {
			t.Errorf("ValidRoom(%q) = %v; want %v", s, got, want)
		}
	}
}

func TestValidName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"", false},
		{"a", true},
		{"ann", true},
		{"Ann_B-c.9", true},
		{strings.Repeat("n", 31), true},
		{strings.Repeat("n", 32), true},
		{strings.Repeat("n", 33), false},
		{strings.Repeat("n", 64), false}, // a valid room length is not a valid name length
		{":", false},
		{"a:b", false}, // ':' is for rooms only
		{"a b", false},
		{"a/b", false},
		{"josé", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		if got := protocol.ValidName(tt.in); got != tt.want {
			t.Errorf("ValidName(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
	for c := 0; c < 256; c++ {
		s := string([]byte{byte(c)})
		want := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '.'
		if got := protocol.ValidName(s); got != want {
			t.Errorf("ValidName(%q) = %v; want %v", s, got, want)
		}
	}
}

// ---------------------------------------------------------------------------
// Frames

// parseFrame decodes one server-to-client WebSocket frame per RFC 6455 §5.2
// and returns its payload. It fails the test on anything a conforming client
// would reject, and on non-minimal length encodings (§5.2 "the minimal number
// of bytes MUST be used").
func parseFrame(t *testing.T, f []byte) []byte {
	t.Helper()
	if len(f) < 2 {
		t.Fatalf("frame of %d bytes has no header", len(f))
	}
	if f[0] != 0x81 {
		t.Fatalf("first byte = %#02x; want 0x81 (FIN, no RSV bits, opcode text)", f[0])
	}
	if f[1]&0x80 != 0 {
		t.Fatalf("server frame has the MASK bit set")
	}
	var n uint64
	hdr := 2
	switch l := f[1] & 0x7f; l {
	case 126:
		if len(f) < 4 {
			t.Fatalf("frame of %d bytes too short for a 16-bit length", len(f))
		}
		n = uint64(binary.BigEndian.Uint16(f[2:4]))
		hdr = 4
		if n < 126 {
			t.Fatalf("16-bit length %d is not minimal", n)
		}
	case 127:
		if len(f) < 10 {
			t.Fatalf("frame of %d bytes too short for a 64-bit length", len(f))
		}
		n = binary.BigEndian.Uint64(f[2:10])
		hdr = 10
		if n>>63 != 0 {
			t.Fatalf("64-bit length has the most significant bit set")
		}
		if n <= 0xffff {
			t.Fatalf("64-bit length %d is not minimal", n)
		}
	default:
		n = uint64(l)
	}
	if uint64(len(f)-hdr) != n {
		t.Fatalf("header says %d payload bytes; frame has %d", n, len(f)-hdr)
	}
	return f[hdr:]
}

// lengthForm is the header size a payload of n bytes must use.
func lengthForm(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xffff:
		return 4
	default:
		return 10
	}
}

var frameSizes = []int{0, 1, 124, 125, 126, 127, 1000, 65534, 65535, 65536, 65537, 1 << 20}

func TestFrameJSON(t *testing.T) {
	t.Parallel()
	for _, n := range frameSizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			payload := bytes.Repeat([]byte("x"), n)
			f := protocol.FrameJSON(payload)
			if got, want := len(f), lengthForm(n)+n; got != want {
				t.Fatalf("len(frame) = %d; want %d", got, want)
			}
			if got := parseFrame(t, f); !bytes.Equal(got, payload) {
				t.Fatalf("parsed payload differs from input")
			}
			if got := f.Payload(); !bytes.Equal(got, payload) {
				t.Fatalf("Payload() differs from input")
			}
		})
	}
}

func TestFrameJSONCopiesPayload(t *testing.T) {
	t.Parallel()
	payload := []byte(`{"type":"pong"}`)
	f := protocol.FrameJSON(payload)
	payload[2] = 'X'
	if got := string(f.Payload()); got != `{"type":"pong"}` {
		t.Fatalf("TextFrame aliases its input: payload now %q", got)
	}
}

// jsonStringOfLen returns an ASCII string whose JSON encoding is exactly n
// bytes long (n >= 2).
func jsonStringOfLen(n int) string {
	return strings.Repeat("a", n-2)
}

func TestEncodeSizes(t *testing.T) {
	t.Parallel()
	// Encode of a Go string s yields len(s)+2 bytes of JSON for plain ASCII.
	for _, n := range []int{2, 3, 125, 126, 127, 65535, 65536, 65537} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			s := jsonStringOfLen(n)
			f, err := protocol.Encode(s)
			if err != nil {
				t.Fatal(err)
			}
			p := parseFrame(t, f)
			if len(p) != n {
				t.Fatalf("payload is %d bytes; want %d", len(p), n)
			}
			if want := `"` + s + `"`; string(p) != want {
				t.Fatalf("payload is not the exact JSON")
			}
			if !bytes.Equal(f.Payload(), p) {
				t.Fatalf("Payload() disagrees with the header")
			}
			var back string
			if err := json.Unmarshal(f.Payload(), &back); err != nil || back != s {
				t.Fatalf("round trip failed: %v", err)
			}
		})
	}
}

func TestEncodeChat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
	}{
		{"string", `"hello"`},
		{"html", `"<b>Tom & Jerry</b> -> \u003c"`},
		{"object", `{"a":1,"b":[true,false,null],"c":"<&>"}`},
		{"number", `42`},
		{"array", `[1,"two"]`},
		{"unicode", `"héllo 世界 🎉"`},
		{"big", `"` + strings.Repeat("y", 70000) + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := protocol.Chat{
				Type: protocol.TypeMessage, Room: "dev:a-b", User: "ann<&>",
				Data: json.RawMessage(tt.data), ID: "01J&<>", TS: 1700000000123,
			}
			f, err := protocol.Encode(in)
			if err != nil {
				t.Fatal(err)
			}
			p := parseFrame(t, f)
			want := `{"type":"message","room":"dev:a-b","user":"ann<&>","data":` + tt.data + `,"id":"01J&<>","ts":1700000000123}`
			if string(p) != want {
				t.Fatalf("payload\n got %s\nwant %s", trunc(p), trunc([]byte(want)))
			}
			var out protocol.Chat
			if err := json.Unmarshal(f.Payload(), &out); err != nil {
				t.Fatal(err)
			}
			if out.Type != in.Type || out.Room != in.Room || out.User != in.User ||
				out.ID != in.ID || out.TS != in.TS || string(out.Data) != tt.data {
				t.Fatalf("round trip: got %+v", out)
			}
		})
	}
}

func TestEncodeNoHTMLEscapingNoNewline(t *testing.T) {
	t.Parallel()
	f, err := protocol.Encode(protocol.Notification{
		Type: protocol.TypeNotification, Data: "<script>a && b</script>", ID: "i", TS: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := parseFrame(t, f)
	want := `{"type":"notification","data":"<script>a && b</script>","id":"i","ts":1}`
	if string(p) != want {
		t.Fatalf("payload = %s; want %s", p, want)
	}
	for _, esc := range []string{`\u003c`, `\u003e`, `\u0026`} {
		if bytes.Contains(p, []byte(esc)) {
			t.Errorf("payload contains HTML escape %s", esc)
		}
	}
	if bytes.HasSuffix(p, []byte("\n")) || bytes.ContainsAny(p, "\n") {
		t.Errorf("payload contains a newline: %q", p)
	}
}

func TestEncodeServerFrames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"welcome", protocol.Welcome{Type: protocol.TypeSystem, Event: protocol.EventWelcome, User: "ann", Node: "n1", Room: "lobby", Online: 3, Data: "hi <ann>"},
			`{"type":"system","event":"welcome","user":"ann","node":"n1","room":"lobby","online":3,"data":"hi <ann>"}`},
		{"membership", protocol.Membership{Type: protocol.TypeSystem, Event: protocol.EventJoin, User: "bob", Room: "dev", Online: 2, Data: "bob joined"},
			`{"type":"system","event":"join","user":"bob","room":"dev","online":2,"data":"bob joined"}`},
		{"presence", protocol.Presence{Type: protocol.TypeSystem, Event: protocol.EventPresence, Room: "big", Online: 900, Joined: 5, Left: 2, Data: "x"},
			`{"type":"system","event":"presence","room":"big","online":900,"joined":5,"left":2,"data":"x"}`},
		{"notification all", protocol.Notification{Type: protocol.TypeNotification, Data: "d", ID: "i", TS: 7},
			`{"type":"notification","data":"d","id":"i","ts":7}`},
		{"notification targeted", protocol.Notification{Type: protocol.TypeNotification, Room: "r", User: "u", Data: "d", ID: "i", TS: 7},
			`{"type":"notification","room":"r","user":"u","data":"d","id":"i","ts":7}`},
		{"chat nil data", protocol.Chat{Type: protocol.TypeMessage, Room: "r", User: "u", ID: "i", TS: 1},
			`{"type":"message","room":"r","user":"u","data":null,"id":"i","ts":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := protocol.Encode(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(parseFrame(t, f)); got != tt.want {
				t.Fatalf("payload\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	if _, err := protocol.Encode(make(chan int)); err == nil {
		t.Error("Encode(chan) succeeded")
	}
	if _, err := protocol.Encode(protocol.Chat{Data: json.RawMessage(`{bad`)}); err == nil {
		t.Error("Encode of a Chat with invalid RawMessage data succeeded")
	}
}

func TestEncodeError(t *testing.T) {
	t.Parallel()
	codes := []protocol.ErrorCode{
		protocol.ErrBadJSON, protocol.ErrUnknownType, protocol.ErrBadMessage, protocol.ErrBinary,
		protocol.ErrBadRoom, protocol.ErrNotMember, protocol.ErrAlreadyMember, protocol.ErrTooManyRooms,
		protocol.ErrRateLimited, protocol.ErrBusy, protocol.ErrUnavailable,
	}
	for _, code := range codes {
		text := `room "a/b" <is> & bad`
		f := protocol.EncodeError(&protocol.Error{Code: code, Text: text})
		p := parseFrame(t, f)
		want := `{"type":"error","code":"` + string(code) + `","error":"room \"a/b\" <is> & bad"}`
		if string(p) != want {
			t.Errorf("EncodeError(%s) payload = %s; want %s", code, p, want)
		}
		var back protocol.ErrorFrame
		if err := json.Unmarshal(f.Payload(), &back); err != nil {
			t.Fatal(err)
		}
		if back.Type != protocol.TypeError || back.Code != code || back.Error != text {
			t.Errorf("EncodeError(%s) round trip = %+v", code, back)
		}
	}
}

// The error a DecodeClient failure produces must encode cleanly, whatever the
// client sent (long or odd type names are truncated and quoted).
func TestEncodeErrorFromDecode(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"type":"` + strings.Repeat("é", 40) + `"}`,
		`{"type":"<script>"}`,
		`{"type":"a\"b"}`,
		`{"type":"message","room":5}`,
	} {
		_, derr := protocol.DecodeClient([]byte(in))
		if derr == nil {
			t.Fatalf("DecodeClient(%q) succeeded", in)
		}
		f := protocol.EncodeError(derr)
		var back protocol.ErrorFrame
		if err := json.Unmarshal(parseFrame(t, f), &back); err != nil {
			t.Fatalf("EncodeError of %q: %v", in, err)
		}
		if back.Code != derr.Code || back.Type != protocol.TypeError {
			t.Errorf("EncodeError of %q round trip = %+v", in, back)
		}
	}
}

func TestPongFrame(t *testing.T) {
	t.Parallel()
	if got := string(parseFrame(t, protocol.PongFrame)); got != `{"type":"pong"}` {
		t.Fatalf("PongFrame payload = %s", got)
	}
	if got := string(protocol.PongFrame.Payload()); got != `{"type":"pong"}` {
		t.Fatalf("PongFrame.Payload() = %s", got)
	}
}

// TestFramesReadByWebSocketClient hands the frames to a real WebSocket client
// (github.com/coder/websocket) behind a hand-written handshake, so the
// library — not just parseFrame — agrees they are well-formed text frames.
func TestFramesReadByWebSocketClient(t *testing.T) {
	t.Parallel()

	var frames []protocol.Frame
	var want [][]byte
	for _, n := range frameSizes {
		p := bytes.Repeat([]byte("z"), n)
		frames = append(frames, protocol.FrameJSON(p))
		want = append(want, p)
	}
	for _, n := range []int{2, 125, 126, 65535, 65536} {
		f, err := protocol.Encode(jsonStringOfLen(n))
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
		want = append(want, []byte(`"`+jsonStringOfLen(n)+`"`))
	}
	frames = append(frames, protocol.PongFrame, protocol.EncodeError(&protocol.Error{Code: protocol.ErrBadRoom, Text: "x"}))
	want = append(want, []byte(`{"type":"pong"}`), []byte(`{"type":"error","code":"bad_room","error":"x"}`))

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		for _, f := range frames {
			rw.Write(f)
		}
		if err := rw.Flush(); err != nil {
			t.Errorf("flush: %v", err)
			return
		}
		// Hold the connection open until the client is done with it.
		io.Copy(io.Discard, conn)
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(2 << 20)
	for i, w := range want {
		typ, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("frame %d: read: %v", i, err)
		}
		if typ != websocket.MessageText {
			t.Fatalf("frame %d: type %v; want text", i, typ)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("frame %d: payload of %d bytes differs from the %d bytes sent", i, len(got), len(w))
		}
	}
}

func trunc(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// Plain text reaches the room as typed: <, > and & are not turned into
// \u003c-style escapes (receivers may be terminals, not browsers).
func TestDecodeClientPlainTextNotHTMLEscaped(t *testing.T) {
	t.Parallel()
	f, err := protocol.DecodeClient([]byte(`a <b> & "c"`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(f.Data), `"a <b> & \"c\""`; got != want {
		t.Fatalf("Data = %s; want %s", got, want)
	}
}
